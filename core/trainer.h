// Trainer: the stream-based training loop (prefetch on the copy stream, no host sync inside a
// step, device-side loss/accuracy accumulators), evaluation, progress, metrics and checkpoints.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpudl/core/augment.h"
#include "gpudl/core/data.h"
#include "gpudl/core/json.h"
#include "gpudl/core/loss.h"
#include "gpudl/core/module.h"
#include "gpudl/core/optim.h"
#include "gpudl/core/schedule.h"

namespace gpudl {

// Training stopped because the loss became NaN or infinite; what() names the step.
class DivergenceError : public Error {
 public:
  using Error::Error;
};

struct TrainerOptions {
  std::int64_t batch = 128;
  int epochs = 1;
  std::uint64_t seed = 0;          // data order (shuffle of epoch e is a function of seed and e)
  bool shuffle = true;
  bool drop_last = false;
  std::int64_t log_every = 50;     // the host reads loss and accuracy every N steps, no more often
  std::string metrics = "";             // JSON-lines file, "" for none; the last line has "event": "final"
  std::string checkpoint = "";          // safetensors path written at each epoch end, "" for none;
                                        // fit() first checks its folder takes new files (IoError)
  std::int64_t checkpoint_every = 0;  // also every N steps (0: epoch ends only)
  std::string resume = "";              // checkpoint to continue from, "" to start fresh
  std::shared_ptr<const Schedule> schedule = nullptr;  // per-step learning rate; null keeps the optimizer's
  float clip_grad_norm = 0.0f;     // > 0: scale gradients to this global L2 norm at most
  bool progress = true;            // progress bar on a terminal, plain lines otherwise
  std::int64_t eval_batch = 1000;
  // Training batches are augmented on the device (on the copy stream, with the prefetch);
  // the draws of step t come from Philox offset t, so a resumed run sees the same crops.
  std::optional<data::AugmentOptions> augment = std::nullopt;
  // Applied to evaluation batches (typically normalisation only).
  std::optional<data::AugmentOptions> eval_augment = std::nullopt;
  // For tests and tools: stop after this many steps in total (0: run all epochs), and read
  // every step's loss back (a host sync per step) into step_losses().
  std::int64_t stop_after_steps = 0;
  bool record_step_losses = false;
};

struct EvalResult {
  double loss = 0.0;
  double accuracy = 0.0;  // NaN when the loss has no notion of accuracy
  std::int64_t samples = 0;
};

struct EpochResult {
  int epoch = 0;
  double train_loss = 0.0, train_accuracy = 0.0;
  EvalResult test;
  double seconds = 0.0;
  double samples_per_second = 0.0;
};

struct FitResult {
  std::vector<EpochResult> epochs;
  std::int64_t steps = 0;
  double seconds = 0.0;
  EvalResult final_test;
};

class Trainer {
 public:
  // The model, optimizer and loss must outlive the trainer; the model must already be on the
  // device to train on (the batches follow it). Throws ValueError for bad options.
  Trainer(Module& model, Optimizer& optimizer, Loss& loss, TrainerOptions options);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains for options.epochs epochs (continuing from options.resume when set) and evaluates
  // on `test` after each epoch when given. Throws DivergenceError when the loss turns
  // non-finite (no checkpoint is written from then on, so the last one holds the last good
  // state), IoError for unwritable metrics or checkpoint files, and what the layers throw.
  FitResult fit(const data::TensorDataset& train, const data::TensorDataset* test = nullptr);

  // Mean loss and accuracy over `data` in eval mode (the model's mode is restored after).
  EvalResult evaluate(const data::TensorDataset& data);

  // Writes model, optimizer, schedule position, RNG states, data order position and progress
  // atomically. Throws DivergenceError if the parameters are not finite, IoError on failure.
  void save_checkpoint(const std::string& path);
  // Restores everything save_checkpoint wrote. Throws IoError for an unreadable or foreign
  // file, ValueError/ShapeError when it does not fit this model and optimizer.
  void load_checkpoint(const std::string& path);

  // Appends one record to the metrics file (a no-op without one). Throws IoError.
  void write_metrics(const json::Value& record);

  std::int64_t global_step() const { return step_; }
  const std::vector<float>& step_losses() const { return step_losses_; }

 private:
  // Runs the rest of the loader's epoch; false when stop_after_steps cut it short.
  bool run_epoch(data::DataLoader& loader, EpochResult& result);
  void check_recent_losses();
  void report_progress(std::int64_t batches, double samples_per_second, bool end_of_epoch);

  Module& model_;
  Optimizer& optimizer_;
  Loss& loss_;
  TrainerOptions options_;
  std::int64_t step_ = 0;     // completed steps
  std::int64_t epoch_ = 0;    // current epoch
  std::int64_t position_ = 0; // batches done in the current epoch
  std::vector<float> step_losses_;
  Tensor loss_acc_, correct_acc_, recent_losses_;
  std::int64_t acc_samples_ = 0, recent_count_ = 0;
  // The epoch's accumulators as a checkpoint saved them, for a run resumed mid-epoch.
  Tensor resumed_loss_, resumed_correct_;
  std::int64_t resumed_samples_ = 0;
  double epoch_start_ = 0.0, log_time_ = 0.0;
  std::int64_t log_samples_ = 0;
  int total_epochs_ = 0;
  std::string last_checkpoint_;
  std::FILE* metrics_ = nullptr;
};

}  // namespace gpudl
