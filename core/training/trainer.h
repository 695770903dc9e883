// Trainer: the one training loop (prefetch on the copy stream, no host sync inside a step,
// device-side loss/accuracy accumulators) over any batch source, evaluation, progress, metrics,
// checkpoints and exact resume.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpudl/core/data/augment.h"
#include "gpudl/core/data/data.h"
#include "gpudl/core/dist/data_parallel.h"
#include "gpudl/core/io/json.h"
#include "gpudl/core/io/tensorboard.h"
#include "gpudl/core/training/average.h"
#include "gpudl/core/training/loss.h"
#include "gpudl/core/training/loss_scaler.h"
#include "gpudl/core/runtime/cuda_graph.h"
#include "gpudl/core/runtime/module.h"
#include "gpudl/core/runtime/precision.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/core/training/schedule.h"

namespace gpudl {

// Training stopped because the loss became NaN or infinite; what() names the step.
class DivergenceError : public Error {
 public:
  using Error::Error;
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
  EvalResult final_test;  // of the model as fit() leaves it
  bool out_of_time = false;  // stopped by options.max_seconds
};

struct TrainerOptions {
  // How fit(TensorDataset) batches its data (a BatchSource brings its own order).
  std::int64_t batch = 128;
  // Gradient accumulation: each optimizer step sums the gradients of this many consecutive
  // micro-batches of the source (of `batch` samples each), so the effective batch is
  // accumulate x batch per rank, then unscales (fp16), clips and steps once. The gradient is
  // that of the mean loss over every sample of the step: micro-batch i's loss gradient is
  // weighted by n_i / (n_0 x K') as it comes (K' the micro-batches of this group, n_0 the
  // first's size, both known when the group starts), and the sum is rescaled by
  // n_0 x K' / (n_0 + ... + n_{K'-1}) once its sizes are all known, which is exactly 1 unless
  // the sizes differ (a short last batch). Groups are cut within an epoch: the epoch's last
  // may hold fewer micro-batches (drop_last drops a short micro-batch, not a short group).
  // global_step, schedules, log_every, checkpoint_every, stop_after_steps, ema, after_step and
  // fp16's scale updates count optimizer steps; checkpoints and stops (max_seconds included,
  // so it may stop up to accumulate - 1 micro-batches late) fall between steps only, and a
  // checkpoint records the setting: a resume with another value is refused by name. Data
  // parallelism all-reduces once per step, while the last micro-batch's backward runs.
  // accumulate > 1 blocks CUDA graphs (graph_blocker). Must be >= 1.
  std::int64_t accumulate = 1;
  int epochs = 1;
  std::uint64_t seed = 0;          // data order (shuffle of epoch e is a function of seed and e)
  bool shuffle = true;
  bool drop_last = false;
  std::int64_t log_every = 50;     // the host reads loss and accuracy every N steps, no more often
  std::string metrics = "";             // JSON-lines file, "" for none; the last line has "event": "final"
  // > 0: an exponential moving average of the weights (and batch-norm statistics), average <-
  // ema x average + (1 - ema) x weights after every optimizer step, which evaluation uses (the
  // epochs' test results and final_test) and checkpoints keep ("trainer.ema.<name>"), so a
  // resumed run continues it exactly. The model itself keeps training's weights; put the
  // average in with weight_average()->copy_to_model() (before an export, say). In [0, 1).
  double ema = 0.0;
  // TensorBoard log folder, "" for none (rank 0 writes): every log_every steps the running
  // train/loss, train/accuracy, train/samples_per_second, train/lr (and train/loss_scale under
  // fp16); every metrics record's numbers as "<event>/<field>" (epoch/test_accuracy, ...); the
  // model and the run's settings as text. fit() checks first that the folder takes files.
  std::string tensorboard = "";
  std::string checkpoint = "";          // safetensors path written at each epoch end and at a stop
                                        // (max_seconds, stop_after_steps), "" for none; fit()
                                        // first checks its folder takes new files (IoError)
  std::int64_t checkpoint_every = 0;  // also every N steps (0: epoch ends only)
  std::string resume = "";              // checkpoint to continue from, "" to start fresh
  std::shared_ptr<const Schedule> schedule = nullptr;  // per-step learning rate; null keeps the optimizer's
  float clip_grad_norm = 0.0f;     // > 0: scale gradients to this global L2 norm at most
  bool progress = true;            // progress bar on a terminal, plain lines otherwise
  std::int64_t eval_batch = 1000;
  // Training batches are augmented on the device (on the copy stream, with the prefetch);
  // the draws of step t come from Philox offset t (of its micro-batch m, t x accumulate + m), so
  // a resumed run sees the same crops.
  std::optional<data::AugmentOptions> augment = std::nullopt;
  // What the model computes in (core/runtime/precision.h); unset means default_precision() of
  // the model's device (bf16 on a GPU of compute capability 8.0 or newer, fp32 elsewhere). The
  // Trainer sets it on the model, says it at the start of fit(), and writes it to the metrics.
  std::optional<Precision> precision = std::nullopt;
  // fp16's dynamic loss scaling (no other precision scales the loss). Its state is in the
  // checkpoints, so a resumed run continues with the same scale.
  LossScalerOptions loss_scaling = {};
  // Data parallelism over the job's processes (core/dist): unset means on when this process is
  // one of several started by mpirun or srun. Each rank then trains a replica on its part of
  // every batch (`batch` is per rank; the global batch is batch x ranks), gradients are
  // averaged over the ranks while backward runs, evaluation is shared out and its sums
  // reduced, and only rank 0 prints, writes metrics and writes checkpoints (every rank reads
  // the checkpoint it resumes from, so it must be on a file system they share). On with one
  // process, it runs the same code path through a one-rank group (NCCL's on a GPU).
  std::optional<bool> distributed = std::nullopt;
  dist::DataParallelOptions data_parallel = {};
  // Applied to evaluation batches (typically normalisation only).
  std::optional<data::AugmentOptions> eval_augment = std::nullopt;
  // For tests and tools: stop after this many steps in total (0: run all epochs), and read
  // every step's loss back (a host sync per micro-batch) into step_losses(): one value per
  // optimizer step, the mean loss over its samples on this rank (with accumulation, the mean
  // of its micro-batches' losses weighted by their sizes).
  std::int64_t stop_after_steps = 0;
  bool record_step_losses = false;
  // Stop once fit() has run this many seconds (checked after every step; 0: no limit). A stop
  // by time or by stop_after_steps writes the checkpoint (when one is set), and a run resumed
  // from it continues at the next step as if never stopped.
  double max_seconds = 0.0;
  // CUDA graphs. kOn: on a GPU, after kGraphWarmupSteps eager steps, forward, loss, backward
  // and the optimizer step of a full batch are captured once (CudaGraph) and replayed for every
  // full batch after; the batch is copied into the graph's input first, and augmentation and
  // the loss accounting stay outside it. The learning rate (schedules included) and the
  // optimizers' other per-step values are written to device memory before each replay, and a
  // change of what the optimizer passes its kernels (Optimizer::launch_version) captures the
  // step again. A step that a replay would repeat wrongly (a random offset passed as a kernel
  // argument, a value read back to the host; see Trainer::graph_blocker) runs eagerly instead,
  // as does the rest of the run after a capture that fails: one line on stderr says why, and no
  // step is ever replayed wrongly. kAuto is
  // kOff until the captured step has been checked against the eager one on a GPU
  // (docs/gpu.md); the CPU always runs eagerly.
  enum class GraphMode { kAuto, kOn, kOff };
  GraphMode cuda_graph = GraphMode::kAuto;

  // Hooks for a model that carries state from batch to batch (a recurrent layer reading
  // StreamBatches by truncated BPTT: reset its state, carry it). on_epoch_start runs before
  // the first batch of an epoch begun from its start (an epoch resumed in the middle gets the
  // state from the checkpoint, through restore_extra) and before evaluate() over a
  // BatchSource; after_step after every optimizer step (with accumulation: after its last
  // micro-batch, so a hook carrying state from batch to batch does not fit accumulate > 1) and
  // every such evaluation batch.
  std::function<void()> on_epoch_start;
  std::function<void()> after_step;
  // Set when after_step only keeps host-side count or enqueues device work on memory that stays
  // where it is (airbench's lookahead, a parameter group's factor): a captured step may then be
  // replayed, the hook running after each replay. Left false, the hook keeps the run eager.
  bool after_step_graph_safe = false;
  // Entries a checkpoint holds beside the model's, the optimizer's and the trainer's, under
  // their own names (which may not begin with "model.", "optimizer." or "trainer."): a
  // vocabulary, a carried recurrent state. checkpoint_extra gives them at every save;
  // restore_extra gets the checkpoint's path and all its entries outside those three on
  // resume, before anything is restored, and throws to refuse the file or restores from them.
  // Distributed, every rank's entries (of one shape on all ranks) are saved, and each rank gets
  // its own back.
  std::function<std::vector<NamedTensor>()> checkpoint_extra;
  // Metadata entries every checkpoint carries beside the Trainer's own (whose keys they may not
  // reuse): model_metadata's architecture, class names and normalisation make a checkpoint
  // loadable with no code (layers/architecture.h's load_model(path)).
  std::vector<std::pair<std::string, std::string>> checkpoint_metadata;
  std::function<void(const std::string& path, const std::vector<NamedTensor>& extra)> restore_extra;
  // After each epoch's evaluation, before its metrics record is written and its checkpoint
  // saved: a driver prints its own summary, adds fields to the record, or throws to stop.
  std::function<void(const EpochResult& epoch, json::Value& record)> on_epoch_end;
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
  // state), IoError for unwritable metrics or checkpoint files, ValueError when a resumed
  // checkpoint was saved with another data order (naming the setting: batch, shuffle, ...),
  // and what the layers and hooks throw. The metrics file is truncated on a fresh run and
  // appended to by a resumed one (options.resume, or load_checkpoint() called before).
  FitResult fit(const data::TensorDataset& train, const data::TensorDataset* test = nullptr);
  // The same over any batch source (options.batch, shuffle, drop_last and seed are the
  // source's business then); `test` is evaluated with evaluate(BatchSource&).
  FitResult fit(data::BatchSource& train, data::BatchSource* test = nullptr);

  // Mean loss and accuracy over `data` in eval mode (the model's mode is restored after).
  // Distributed: every rank must call it; each evaluates its part of `data` with rank 0's
  // batch-norm statistics, and all get the sums over every part.
  EvalResult evaluate(const data::TensorDataset& data);
  // The same over epoch 0 of `source`, every batch weighted by its label count (so a mean
  // per token for StreamBatches), with the on_epoch_start and after_step hooks.
  EvalResult evaluate(data::BatchSource& source);

  // Writes model, optimizer, schedule position, RNG states, data order position and progress
  // atomically. Throws DivergenceError if the parameters are not finite, IoError on failure.
  // Distributed: every rank must call it (ZeRO-1 gathers the optimizer state); rank 0 writes.
  void save_checkpoint(const std::string& path);
  // Restores everything save_checkpoint wrote; the next fit() continues from it and checks
  // that its data comes in the saved order, or `source` is checked now when given. Throws
  // IoError for an unreadable or foreign file, ValueError/ShapeError when it does not fit this
  // model and optimizer, ValueError naming the setting when `source` orders the data
  // otherwise, and what options.restore_extra throws.
  void load_checkpoint(const std::string& path, const data::BatchSource* source = nullptr);

  // Appends one record to the metrics file (a no-op without one). Throws IoError.
  void write_metrics(const json::Value& record);

  std::int64_t global_step() const { return step_; }
  // This process's rank and the number of ranks training together (0 and 1 when not distributed).
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  // The data parallelism in use (nullptr when not distributed).
  dist::DataParallel* data_parallel() const { return dp_.get(); }
  Precision precision() const { return precision_; }
  // fp16's loss scaler (nullptr under the other precisions).
  const LossScaler* loss_scaler() const { return scaler_.get(); }
  // The epoch in progress (0-based): after a resume, the one the run continues in.
  std::int64_t epoch() const { return epoch_; }
  const std::vector<float>& step_losses() const { return step_losses_; }
  // Why the training step cannot be captured as a CUDA graph, in a few words naming the
  // setting or module at fault ("" when it can): gradient accumulation, data parallelism,
  // fp16's loss scaling, an after_step hook not marked after_step_graph_safe, a module's own
  // Module::capture_blocker(), and last a device that is not CUDA. (Schedules, every optimizer
  // and dropout can be replayed: their per-step values, dropout's Philox offsets included, live
  // on the device.)
  std::string graph_blocker() const;
  // Whether steps are being replayed from a captured graph (after warm-up, with kOn).
  bool graph_replaying() const { return graph_ != nullptr; }
  // The moving average of options.ema (nullptr without one).
  WeightAverage* weight_average() const { return ema_.get(); }
  // Captures after the first, made because the optimizer's launch_version() changed.
  std::int64_t graph_recaptures() const { return graph_recaptures_; }
  static constexpr std::int64_t kGraphWarmupSteps = 3;

 private:
  class EvalSums;
  // load_checkpoint, then one line on stderr (with progress on) saying where the run continues.
  void resume_from(const std::string& path);
  FitResult run(data::BatchSource& train, const std::function<EvalResult()>& test);
  // Runs the rest of the source's epoch; false when stop_after_steps or max_seconds cut it short.
  bool run_epoch(data::BatchSource& source, EpochResult& result);
  // Throws ValueError naming the first setting of `source` that differs from the resumed
  // checkpoint's (a no-op when nothing was resumed or it was checked already).
  void check_resumed_order(const data::BatchSource& source);
  bool time_is_up() const;
  // Whether `flag` holds on any rank (itself when not distributed): a collective.
  bool any_rank(bool flag);
  // Gradient clipping to options.clip_grad_norm over `params`; `sharded` (ZeRO-1): they are
  // this rank's share, and the norm is summed over the ranks.
  void clip_sharded_or_not(const std::vector<Parameter*>& params, bool sharded);
  // The epoch's loss and correct-prediction sums over every rank (a collective when distributed).
  std::pair<float, float> epoch_sums();
  // Each rank's dropout and augmentation draw from their own Philox streams: rank r's
  // generator seeds are rank 0's mixed with r (rank 0's are the checkpoint's).
  void apply_rank_seeds();
  void check_recent_losses();
  void report_progress(std::int64_t batches, double samples_per_second, bool end_of_epoch);
  // Forward, loss, backward and the optimizer step of one batch (x, y on the model's device)
  // of n samples out of n_global over the ranks; returns the batch's mean loss.
  Tensor compute_step(const Tensor& x, const Tensor& y, std::int64_t n, std::int64_t n_global,
                      const std::vector<Parameter*>& params);
  // Forward, loss and backward of one (micro-)batch, its loss gradient multiplied by
  // grad_weight, the gradients zeroed first when `zero`; with dp_share, data parallelism's
  // all-reduce runs with that weight (DataParallel::prepare) while backward does. Returns the
  // batch's mean loss.
  Tensor backward_pass(const Tensor& x, const Tensor& y, bool zero, double grad_weight,
                       std::optional<double> dp_share);
  // The optimizer step on the gradients backward_pass left: multiplied by `rescale` (not
  // distributed; distributed runs pass theirs to dp_share), checked and unscaled under fp16
  // (an overflow skips the step), clipped, applied.
  void apply_step(const std::vector<Parameter*>& params, double rescale);
  // The optimizer step in progress, a group of micro-batches: in an epoch of B batches the
  // steps end after batches K, 2K, ... and B (K = accumulate).
  struct Group {
    std::int64_t size = 1;          // micro-batches in this group
    std::int64_t first_global = 0;  // samples of its first micro-batch over all ranks
    std::int64_t global = 0;        // samples so far over all ranks
    std::int64_t local = 0;         // samples so far on this rank
    double loss_sum = 0.0;          // their losses times their sizes (record_step_losses)
  };
  Group group_;
  // The source's order settings and, with accumulation, the accumulate setting, which
  // checkpoints record and a resume must match.
  data::OrderSettings order_settings_of(const data::BatchSource& source) const;
  // The same step through the captured graph, capturing it first once warm-up is done: false
  // when this batch must run eagerly (warm-up, another shape, a failed capture).
  bool graph_step(const Tensor& x, const Tensor& y, std::int64_t n, std::int64_t n_global,
                  const std::vector<Parameter*>& params, Tensor& loss, Tensor& correct);

  Module& model_;
  Optimizer& optimizer_;
  Loss& loss_;
  TrainerOptions options_;
  Precision precision_ = Precision::kF32;
  std::unique_ptr<LossScaler> scaler_;
  std::int64_t step_ = 0;     // completed steps
  std::int64_t epoch_ = 0;    // current epoch
  std::int64_t position_ = 0; // batches (micro-batches) done in the current epoch
  std::vector<float> step_losses_;
  Tensor loss_acc_, correct_acc_, recent_losses_;
  // recent_losses_ holds the losses of recent_count_ micro-batches, of recent_steps_ steps.
  std::int64_t acc_samples_ = 0, recent_count_ = 0, recent_steps_ = 0;
  // The epoch's accumulators as a checkpoint saved them, for a run resumed mid-epoch.
  Tensor resumed_loss_, resumed_correct_;
  std::int64_t resumed_samples_ = 0;
  double epoch_start_ = 0.0, log_time_ = 0.0;
  std::int64_t log_samples_ = 0;
  int total_epochs_ = 0;
  std::string last_checkpoint_;
  std::FILE* metrics_ = nullptr;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  std::unique_ptr<WeightAverage> ema_;
  // `evaluate` run with the averaged weights in the model when there is an average.
  EvalResult with_average(const std::function<EvalResult()>& evaluate);
  // The run's settings and model as TensorBoard text, once per fit().
  void describe_run_to_tensorboard();
  bool resumed_ = false;           // a checkpoint was loaded: the metrics file is appended to
  // The data order the loaded checkpoint was saved with, until fit() has compared it with its
  // source; `legacy`: a checkpoint from before "data_order", which recorded batch and shuffle.
  std::optional<data::OrderSettings> resumed_order_;
  bool resumed_order_legacy_ = false;
  std::string resumed_path_;
  double fit_start_ = 0.0;
  bool out_of_time_ = false;
  data::OrderSettings order_;      // of the source being fitted, for the checkpoints
  std::int64_t saved_step_ = -1;   // step of the last checkpoint written
  std::unique_ptr<dist::DataParallel> dp_;
  std::vector<Parameter*> own_params_;  // ZeRO-1: the parameters this rank updates
  int rank_ = 0, world_ = 1;
  // CUDA graph of the training step (cuda_graph kOn): on, and once captured the graph, its
  // input buffers and the loss and correct count it writes.
  bool graph_on_ = false;
  std::int64_t graph_warmup_ = 0;
  std::unique_ptr<CudaGraph> graph_;
  Tensor graph_x_, graph_y_, graph_loss_, graph_correct_;
  std::int64_t graph_launch_version_ = 0;  // the optimizer's launch_version() at the capture
  std::int64_t graph_recaptures_ = 0;
  // Per random stream of the model, the offsets one replay of the captured step reserves.
  std::vector<std::pair<Generator*, std::uint64_t>> graph_advances_;
};

}  // namespace gpudl
