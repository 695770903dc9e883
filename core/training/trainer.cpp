// The training loop: prefetching copies, device-side accumulators, divergence checks, progress,
// metrics and atomic checkpoints.
#include "gpudl/core/training/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "gpudl/core/detail/clock.h"
#include "gpudl/core/runtime/context.h"
#include "gpudl/core/runtime/format.h"
#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/ops.h"
#include "gpudl/core/io/safetensors.h"

namespace gpudl {

namespace {

constexpr const char* kCheckpointFormat = "gpudl-checkpoint-1";

std::string format_duration(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
  return buf;
}

// The prefixes of the model's, optimizer's and trainer's own checkpoint entries.
bool is_reserved_name(const std::string& name) {
  return name.rfind("model.", 0) == 0 || name.rfind("optimizer.", 0) == 0 || name.rfind("trainer.", 0) == 0;
}

// What rank r mixes into its generator seeds: 0 for rank 0, so rank 0's seeds are the run's.
std::uint64_t rank_mix(int rank) { return static_cast<std::uint64_t>(rank) * 0x9E37'79B9'7F4A'7C15ull; }

}  // namespace

Trainer::Trainer(Module& model, Optimizer& optimizer, Loss& loss, TrainerOptions options)
    : model_(model), optimizer_(optimizer), loss_(loss), options_(std::move(options)) {
  if (options_.batch < 1 || options_.epochs < 0 || options_.log_every < 1 || options_.eval_batch < 1 ||
      options_.checkpoint_every < 0 || options_.stop_after_steps < 0 || !(options_.clip_grad_norm >= 0.0f) ||
      !(options_.max_seconds >= 0.0)) {
    throw ValueError("Trainer: batch, log_every and eval_batch must be >= 1; epochs, checkpoint_every, "
                     "stop_after_steps, clip_grad_norm and max_seconds must be >= 0");
  }
  if (!(options_.ema >= 0.0 && options_.ema < 1.0)) {
    throw ValueError("Trainer: ema must be in [0, 1) (0: no moving average), got " + format_number(options_.ema));
  }
  if (options_.accumulate < 1) {
    throw ValueError("Trainer: accumulate (micro-batches per optimizer step) must be >= 1, got " +
                     std::to_string(options_.accumulate));
  }
  if (options_.ema > 0.0) ema_ = std::make_unique<WeightAverage>(model_);
  precision_ = options_.precision.value_or(default_precision(model_.device()));
  model_.set_precision(precision_);  // throws DeviceError where the device cannot run it
  if (precision_ == Precision::kF16) scaler_ = std::make_unique<LossScaler>(options_.loss_scaling);
  if (options_.distributed.value_or(dist::is_distributed())) {
    const dist::DataParallelOptions& dp = options_.data_parallel;
    dist::ProcessGroup& group = dist::group(model_.device());
    rank_ = group.rank();
    world_ = group.size();
    dp_ = std::make_unique<dist::DataParallel>(model_, group, dp);
    if (dp.zero1) {
      dp_->shard(optimizer_);
      const std::vector<Parameter*>& all = optimizer_.params();
      for (std::size_t i = 0; i < all.size(); ++i) {
        if (optimizer_.owns(i)) own_params_.push_back(all[i]);
      }
    }
    apply_rank_seeds();
  }
}

void Trainer::apply_rank_seeds() {
  if (rank_ == 0) return;
  for (Generator* g : model_.generators()) g->set_state(g->seed() ^ rank_mix(rank_), g->offset());
}

void Trainer::clip_sharded_or_not(const std::vector<Parameter*>& params, bool sharded) {
  if (!sharded) {
    clip_grad_norm(params, options_.clip_grad_norm);
    return;
  }
  // A rank that owns nothing still takes part in the norm's all-reduce.
  dist::ProcessGroup& group = dp_->group();
  if (params.empty()) {
    group.all_reduce(Tensor::zeros({1}, DType::kF32, model_.device()));
    return;
  }
  clip_grad_norm(params, options_.clip_grad_norm, [&group](const Tensor& total) { group.all_reduce(total); });
}

bool Trainer::any_rank(bool flag) {
  if (!dp_) return flag;
  Tensor t = Tensor::full({1}, flag ? 1.0f : 0.0f, DType::kF32, model_.device());
  dp_->group().all_reduce(t);
  return t.to_vector<float>()[0] > 0.0f;
}

std::pair<float, float> Trainer::epoch_sums() {
  if (!loss_acc_.defined()) return {0.0f, 0.0f};
  if (!dp_) return {loss_acc_.to_vector<float>()[0], correct_acc_.to_vector<float>()[0]};
  Tensor sums = Tensor::empty({2}, DType::kF32, model_.device());
  ops::copy(sums.slice(0, 1), loss_acc_);
  ops::copy(sums.slice(1, 2), correct_acc_);
  dp_->group().all_reduce(sums);
  const std::vector<float> v = sums.to_vector<float>();
  return {v[0], v[1]};
}

Trainer::~Trainer() {
  if (metrics_ != nullptr) std::fclose(metrics_);
}

void Trainer::write_metrics(const json::Value& record) {
  if (tensorboard_ != nullptr && record.is_object()) {
    // Every number of the record becomes a point of "<event>/<field>" at its step.
    std::string event = "run";
    std::int64_t step = step_;
    for (const auto& [name, value] : record.as_object()) {
      if (name == "event" && value.is_string()) event = value.as_string();
      if (name == "step" && value.is_int()) step = value.as_int();
    }
    for (const auto& [name, value] : record.as_object()) {
      if (value.is_number() && name != "step" && name != "epoch") {
        tensorboard_->scalar(event + "/" + name, value.as_double(), step);
      }
    }
  }
  if (metrics_ == nullptr) return;
  const std::string line = json::dump(record) + "\n";
  if (std::fputs(line.c_str(), metrics_) < 0 || std::fflush(metrics_) != 0) {
    throw IoError(options_.metrics + ": cannot write metrics: " + std::strerror(errno));
  }
}

namespace {

// Fails now, naming the checkpoint, if its folder cannot take a new file: finding that out at
// the first save would cost the work done until then.
void check_checkpoint_folder(const std::string& path) {
  const std::string probe = path + ".probe-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  if (f == nullptr) {
    throw IoError("Trainer: checkpoint " + path + ": cannot create files beside it: " + std::strerror(errno));
  }
  std::fclose(f);
  ::unlink(probe.c_str());
}

}  // namespace

FitResult Trainer::fit(const data::TensorDataset& train, const data::TensorDataset* test) {
  if (!options_.checkpoint.empty() && rank_ == 0) check_checkpoint_folder(options_.checkpoint);
  // First: the checkpoint holds the data seed the loader must shuffle with.
  if (!options_.resume.empty()) resume_from(options_.resume);
  data::DataLoader loader(train, {.batch = options_.batch,
                                  .shuffle = options_.shuffle,
                                  .drop_last = options_.drop_last,
                                  .seed = options_.seed,
                                  .rank = rank_,
                                  .world = world_});
  std::function<EvalResult()> evaluate_test;
  if (test != nullptr) evaluate_test = [this, test] { return evaluate(*test); };
  return run(loader, evaluate_test);
}

FitResult Trainer::fit(data::BatchSource& train, data::BatchSource* test) {
  if (!options_.checkpoint.empty() && rank_ == 0) check_checkpoint_folder(options_.checkpoint);
  if (dp_ && !train.set_shard(rank_, world_)) {
    throw ValueError("Trainer: this batch source cannot be cut over " + std::to_string(world_) +
                     " ranks (BatchSource::set_shard); train it in one process");
  }
  if (!options_.resume.empty()) resume_from(options_.resume);
  std::function<EvalResult()> evaluate_test;
  if (test != nullptr) evaluate_test = [this, test] { return evaluate(*test); };
  return run(train, evaluate_test);
}

void Trainer::resume_from(const std::string& path) {
  load_checkpoint(path);
  // A resumed run says where it continues, so a log shows that it did not start afresh.
  if (options_.progress && rank_ == 0) {
    std::fprintf(stderr, "resumed from %s after step %lld: epoch %lld, batch %lld next\n", path.c_str(),
                 static_cast<long long>(step_), static_cast<long long>(epoch_ + 1),
                 static_cast<long long>(position_ + 1));
  }
}

data::OrderSettings Trainer::order_settings_of(const data::BatchSource& source) const {
  data::OrderSettings order = source.order_settings();
  // Left out at 1, so that the checkpoints of runs without accumulation stay as they were.
  if (options_.accumulate > 1) order.emplace_back("accumulate", std::to_string(options_.accumulate));
  return order;
}

void Trainer::check_resumed_order(const data::BatchSource& source) {
  if (!resumed_order_) return;
  const data::OrderSettings saved = *resumed_order_;
  const data::OrderSettings now = order_settings_of(source);
  auto find = [](const data::OrderSettings& settings, const std::string& key) -> const std::string* {
    for (const auto& [k, v] : settings) {
      if (k == key) return &v;
    }
    return nullptr;
  };
  std::vector<std::string> keys;
  for (const auto& [k, v] : saved) keys.push_back(k);
  for (const auto& [k, v] : now) {
    if (find(saved, k) == nullptr) keys.push_back(k);
  }
  for (const std::string& key : keys) {
    const std::string* a = find(saved, key);
    const std::string* b = find(now, key);
    // An older checkpoint recorded batch and shuffle only: what it does not say cannot differ.
    if (resumed_order_legacy_ && (a == nullptr || b == nullptr)) continue;
    if (a == nullptr || b == nullptr || *a != *b) {
      throw ValueError(resumed_path_ + ": saved with " + key + " " + (a != nullptr ? *a : "(not set)") +
                       " but resuming with " + key + " " + (b != nullptr ? *b : "(not set)") +
                       "; the data order would differ");
    }
  }
  resumed_order_.reset();
}

bool Trainer::time_is_up() const {
  return options_.max_seconds > 0.0 && detail::seconds_now() - fit_start_ >= options_.max_seconds;
}

FitResult Trainer::run(data::BatchSource& train, const std::function<EvalResult()>& test) {
  check_resumed_order(train);
  order_ = order_settings_of(train);
  if (!options_.metrics.empty() && metrics_ == nullptr && rank_ == 0) {
    // A resumed run appends, so the file tells the whole story of the model; a fresh one
    // starts it afresh rather than mixing two runs' lines.
    metrics_ = std::fopen(options_.metrics.c_str(), resumed_ ? "a" : "w");
    if (metrics_ == nullptr) throw IoError(options_.metrics + ": cannot open for writing: " + std::strerror(errno));
  }
  if (!options_.tensorboard.empty() && tensorboard_ == nullptr && rank_ == 0) {
    tensorboard_ = std::make_unique<TensorBoardWriter>(options_.tensorboard);
    describe_run_to_tensorboard();
  }
  // The batches are data, not something being optimised: the model skips its first layer's
  // input-gradient product while fitting, and gets its own setting back after.
  struct InputGradGuard {
    Module& model;
    bool was;
    ~InputGradGuard() {
      try {
        model.set_input_grad(was);
      } catch (...) {
        // Only an allocation failure can land here, while another error unwinds: that one
        // matters more than restoring a performance setting.
      }
    }
  } input_grad_guard{model_, model_.input_grad()};
  model_.set_input_grad(false);
  const Device device = model_.device();
  train.set_pinned(device.is_cuda());
  if (options_.progress) {
    // A run says what it computes on and in.
    const std::string where = device.is_cpu() ? std::string("cpu") : device.str() + " (" + device.name() + ")";
    std::string line = "training on " + where + " in " + precision_name(precision_);
    if (scaler_) line += ", loss scale " + format_number(scaler_->scale());
    if (dp_) {
      line += ", " + std::to_string(world_) + (world_ == 1 ? " rank" : " ranks") + " (" + dp_->group().backend() +
              (options_.data_parallel.zero1 ? ", zero1" : "") + ")";
      // The batch of fit(TensorDataset); a BatchSource's own is its business.
      if (order_.size() > 0 && order_[0].first == "batch") {
        const long long b = std::stoll(order_[0].second);
        line += ", batch " + std::to_string(b) + " per rank, " + std::to_string(b * world_) + " in all";
      }
    }
    if (options_.accumulate > 1) {
      line += ", " + std::to_string(options_.accumulate) + " micro-batches summed per optimizer step";
    }
    if (rank_ == 0) std::fprintf(stderr, "%s\n", line.c_str());
  }
  // A graph captured by an earlier fit() holds that fit's buffers and shapes: capture afresh.
  graph_.reset();
  graph_x_ = graph_y_ = graph_loss_ = graph_correct_ = Tensor();
  graph_warmup_ = 0;
  graph_on_ = false;
  if (options_.cuda_graph == TrainerOptions::GraphMode::kOn) {
    const std::string why = graph_blocker();
    graph_on_ = why.empty();
    if (rank_ == 0 && (options_.progress || !graph_on_)) {
      if (graph_on_) {
        std::fprintf(stderr, "cuda graph: the step is captured after %lld eager steps and replayed\n",
                     static_cast<long long>(kGraphWarmupSteps));
      } else {
        std::fprintf(stderr, "cuda graph: off, running eagerly: %s\n", why.c_str());
      }
    }
  }
  total_epochs_ = options_.epochs;
  FitResult result;
  fit_start_ = detail::seconds_now();
  out_of_time_ = false;
  bool partial = false;  // stopped in the middle of an epoch
  while (epoch_ < options_.epochs) {
    EpochResult epoch;
    epoch.epoch = static_cast<int>(epoch_) + 1;
    if (!run_epoch(train, epoch)) {
      partial = true;
      break;
    }
    if (test) epoch.test = with_average(test);
    ++epoch_;
    position_ = 0;
    report_progress(train.batches_per_epoch(), epoch.samples_per_second, true);
    if (options_.progress && test && rank_ == 0) {
      std::fprintf(stderr, "  test loss %.4f, accuracy %.2f%%\n", epoch.test.loss, 100.0 * epoch.test.accuracy);
    }
    json::Value record = json::Object{{"event", "epoch"},
                                      {"epoch", epoch.epoch},
                                      {"step", step_},
                                      {"train_loss", epoch.train_loss},
                                      {"seconds", epoch.seconds},
                                      {"samples_per_second", epoch.samples_per_second},
                                      {"lr", optimizer_.lr()},
                                      {"precision", precision_name(precision_)}};
    if (scaler_) {
      record.set("loss_scale", static_cast<double>(scaler_->scale()));
      record.set("skipped_steps", scaler_->skipped_steps());
    }
    if (std::isfinite(epoch.train_accuracy)) record.set("train_accuracy", epoch.train_accuracy);
    if (test) {
      record.set("test_loss", epoch.test.loss);
      if (std::isfinite(epoch.test.accuracy)) record.set("test_accuracy", epoch.test.accuracy);
    }
    if (options_.on_epoch_end) options_.on_epoch_end(epoch, record);
    write_metrics(record);
    // The epoch's sums are reported; the checkpoint must not carry them into the next epoch
    // (a run resumed from it counted them twice in that epoch's loss: found by the crash test).
    loss_acc_ = Tensor::zeros({1}, DType::kF32, device);
    correct_acc_ = Tensor::zeros({1}, DType::kF32, device);
    acc_samples_ = 0;
    if (!options_.checkpoint.empty()) save_checkpoint(options_.checkpoint);
    result.epochs.push_back(epoch);
    if (options_.stop_after_steps > 0 && step_ >= options_.stop_after_steps) break;
    if (out_of_time_) break;
  }
  // The stop's own checkpoint, so that a resume continues at the very next step.
  if (partial && !options_.checkpoint.empty() && saved_step_ != step_) save_checkpoint(options_.checkpoint);
  result.steps = step_;
  result.seconds = detail::seconds_now() - fit_start_;
  result.out_of_time = out_of_time_;
  if (test) result.final_test = partial || result.epochs.empty() ? with_average(test) : result.epochs.back().test;
  return result;
}

EvalResult Trainer::with_average(const std::function<EvalResult()>& evaluate) {
  if (!ema_) return evaluate();
  ema_->swap_with_model();
  struct SwapBack {
    WeightAverage& average;
    ~SwapBack() { average.swap_with_model(); }
  } back{*ema_};
  return evaluate();
}

bool Trainer::run_epoch(data::BatchSource& source, EpochResult& result) {
  const Device device = model_.device();
  Context& ctx = Context::get(device);
  const bool cuda = device.is_cuda();
  model_.train();
  if (resumed_loss_.defined()) {
    loss_acc_ = resumed_loss_;
    correct_acc_ = resumed_correct_.defined() ? resumed_correct_ : Tensor::zeros({1}, DType::kF32, device);
    acc_samples_ = resumed_samples_;
    resumed_loss_ = resumed_correct_ = Tensor();
  } else {
    loss_acc_ = Tensor::zeros({1}, DType::kF32, device);
    correct_acc_ = Tensor::zeros({1}, DType::kF32, device);
    acc_samples_ = 0;
  }
  const std::int64_t accumulate = options_.accumulate;
  recent_losses_ = Tensor::zeros({options_.log_every * accumulate}, DType::kF32, device);
  recent_count_ = recent_steps_ = log_samples_ = 0;
  bool counts_correct = false;
  epoch_start_ = log_time_ = detail::seconds_now();
  const std::int64_t batches = source.batches_per_epoch();
  if (position_ > batches) {
    throw ValueError("Trainer: resuming at batch " + std::to_string(position_) + " of an epoch of " +
                     std::to_string(batches));
  }
  // A checkpoint falls between optimizer steps; one saved inside a step (only a checkpoint
  // from before "data_order" could say another accumulate) cannot continue it.
  if (position_ % accumulate != 0 && position_ != batches) {
    throw ValueError("Trainer: resuming at batch " + std::to_string(position_) + ", inside an optimizer step of " +
                     std::to_string(accumulate) + " accumulated micro-batches");
  }
  if (position_ == 0 && options_.on_epoch_start) options_.on_epoch_start();

  // Two host batches and two device copies: while the GPU runs step i on one pair, the host
  // gathers batch i + 1 into the other and the copy stream moves it over.
  data::Batch host[2];
  Tensor dev_inputs[2], dev_labels[2], augmented[2];
  const std::uint64_t augment_seed = options_.seed ^ 0xA076'1D64'78BD'642Full ^ rank_mix(rank_);
  std::vector<Event> copied, consumed;
  if (cuda) {
    for (int i = 0; i < 2; ++i) {
      copied.emplace_back(device);
      consumed.emplace_back(device);
    }
  }
  const std::vector<Parameter*> params = model_.parameters();
  for (int b = 0;; b ^= 1) {
    if (cuda) copied[b].synchronize();  // the copy out of host[b] two steps ago is done
    if (position_ >= batches) break;
    source.fill(epoch_, position_, host[b]);
    Tensor x = host[b].inputs, y = host[b].labels;
    // Every label is a prediction counted in the loss: a sample, or a token of a text stream.
    const std::int64_t n = y.numel();
    const std::int64_t n_global = host[b].global_size > 0 ? host[b].global_size : n * world_;
    // This micro-batch's place in its group (a whole step without accumulation).
    const std::int64_t micro = position_ % accumulate;
    if (micro == 0) {
      group_ = Group{.size = std::min(accumulate, batches - position_),
                     .first_global = std::max<std::int64_t>(n_global, 1)};
    }
    const bool last = micro == group_.size - 1;
    if (cuda) {
      if (!dev_inputs[b].defined() || dev_inputs[b].shape() != x.shape()) {
        dev_inputs[b] = Tensor::empty(x.shape(), x.dtype(), device);
        dev_labels[b] = Tensor::empty(y.shape(), y.dtype(), device);
      }
      // A fresh buffer belongs to the compute stream, which may still read its memory: the copy
      // and augment wait for that themselves (Storage::before_use). Reused buffers wait here
      // for step i - 2, which read them through raw pointers the storage cannot see.
      ctx.copy_stream().wait(consumed[b]);
      dev_inputs[b].copy_from_async(x, ctx.copy_stream());
      dev_labels[b].copy_from_async(y, ctx.copy_stream());
      x = dev_inputs[b];
      y = dev_labels[b];
    }
    if (options_.augment) {
      if (!augmented[b].defined() || augmented[b].shape() != x.shape()) {
        augmented[b] = Tensor::empty(x.shape(), DType::kF32, device);
      }
      // A draw offset of its own for each micro-batch (the step's without accumulation).
      data::augment(augmented[b], x, *options_.augment, augment_seed,
                    static_cast<std::uint64_t>(step_ * accumulate + micro), cuda ? ctx.copy_exec() : ctx.exec());
      x = augmented[b];
    }
    if (cuda) {
      copied[b].record(ctx.copy_stream());
      ctx.compute_stream().wait(copied[b]);
    }
    if (options_.schedule) optimizer_.set_lr(options_.schedule->lr_at(step_));
    Tensor loss, correct;
    if (accumulate == 1) {
      if (!graph_on_ || !graph_step(x, y, n, n_global, params, loss, correct)) {
        loss = compute_step(x, y, n, n_global, params);
        correct = loss_.correct();
      }
    } else {
      // Weighted by n / (n_0 x K') now and rescaled by n_0 x K' / N at the end, the sum is the
      // gradient of the mean loss over the step's N samples: the sizes to come are unknown,
      // but every micro-batch before an epoch's last has the first's.
      group_.global += n_global;
      group_.local += n;
      const double planned = static_cast<double>(group_.first_global * group_.size);
      const double rescale = last ? planned / static_cast<double>(group_.global) : 1.0;
      // Distributed, the rescale rides on the one all-reduce, started by the last backward.
      std::optional<double> share;
      if (last && dp_) share = rescale;
      loss = backward_pass(x, y, micro == 0, static_cast<double>(n) / planned, share);
      correct = loss_.correct();
      if (last) apply_step(params, dp_ ? 1.0 : rescale);
    }
    if (last) {
      // Outside any captured graph: the average's update is device work on weights that stay put.
      if (ema_) ema_->update(options_.ema);
      if (options_.after_step) options_.after_step();
    }

    // Accumulate on the device; the host looks only every log_every steps.
    ops::axpy(loss_acc_, static_cast<float>(n), loss);
    if (correct.defined()) {
      ops::add(correct_acc_, correct_acc_, correct);
      counts_correct = true;
    }
    ops::copy(recent_losses_.slice(recent_count_, recent_count_ + 1), loss);
    ++recent_count_;
    if (cuda) consumed[b].record(ctx.compute_stream());
    ++position_;
    acc_samples_ += n_global;
    log_samples_ += n_global;
    if (options_.record_step_losses) {
      const float value = loss.to_vector<float>()[0];
      if (accumulate == 1) {
        step_losses_.push_back(value);
      } else {
        group_.loss_sum += static_cast<double>(n) * value;
        if (last) step_losses_.push_back(static_cast<float>(group_.loss_sum / static_cast<double>(group_.local)));
      }
    }
    // Counting, logging, stopping and checkpoints happen between optimizer steps only.
    if (!last) continue;
    ++step_;
    ++recent_steps_;

    // The clock differs between ranks, so under data parallelism they agree on it at the
    // logging points only (a collective each): a stop by time may come log_every steps late.
    if (!dp_ && time_is_up()) out_of_time_ = true;
    if (dp_ && options_.max_seconds > 0.0 && recent_steps_ == options_.log_every) out_of_time_ = any_rank(time_is_up());
    const bool stop = (options_.stop_after_steps > 0 && step_ >= options_.stop_after_steps) || out_of_time_;
    if (recent_steps_ == options_.log_every || stop) {
      check_recent_losses();
      const double t = detail::seconds_now();
      report_progress(batches, static_cast<double>(log_samples_) / (t - log_time_), false);
      log_time_ = t;
      log_samples_ = 0;
    }
    if (options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0 && !options_.checkpoint.empty()) {
      save_checkpoint(options_.checkpoint);
    }
    // A stop that falls on the epoch's last batch still ends the epoch (its metrics line and
    // checkpoint), as a run resumed from that batch's checkpoint would.
    if (stop) {
      if (position_ < batches) return false;
      break;
    }
  }
  check_recent_losses();
  const auto [loss_sum, correct_sum] = epoch_sums();
  result.seconds = detail::seconds_now() - epoch_start_;
  const double samples = static_cast<double>(std::max<std::int64_t>(acc_samples_, 1));
  result.train_loss = loss_sum / samples;
  result.train_accuracy = counts_correct ? correct_sum / samples : std::nan("");
  result.samples_per_second = static_cast<double>(acc_samples_) / result.seconds;
  return true;
}

Tensor Trainer::compute_step(const Tensor& x, const Tensor& y, std::int64_t n, std::int64_t n_global,
                             const std::vector<Parameter*>& params) {
  // This rank's gradient is of its own samples' mean loss; weighted by its share of the
  // global batch, the sum over ranks is the gradient of the global batch's mean loss.
  std::optional<double> share;
  if (dp_) share = static_cast<double>(n) / static_cast<double>(std::max<std::int64_t>(n_global, 1));
  const Tensor loss = backward_pass(x, y, true, 1.0, share);
  apply_step(params, 1.0);
  return loss;
}

Tensor Trainer::backward_pass(const Tensor& x, const Tensor& y, bool zero, double grad_weight,
                              std::optional<double> dp_share) {
  if (zero) optimizer_.zero_grad();
  Tensor out;
  try {
    out = model_.forward(x);
  } catch (const NonFiniteError& e) {
    throw NonFiniteError(e.module_path(), e.module(),
                         "step " + std::to_string(step_ + 1) + " (epoch " + std::to_string(epoch_ + 1) + ", batch " +
                             std::to_string(position_ + 1) + ")");
  }
  const Tensor loss = loss_.forward(out, y);
  Tensor grad = loss_.backward();
  // fp16: the scale lifts small gradients above fp16's underflow on their way back; a step
  // whose gradients overflowed is skipped (one read back per step, the flag) and the scale
  // backs off, as the loss-scaling recipe has it. One multiplication carries it and the
  // micro-batch's weight.
  const double factor = grad_weight * (scaler_ ? static_cast<double>(scaler_->scale()) : 1.0);
  if (factor != 1.0) {
    Tensor scaled = Tensor::empty(grad.shape(), grad.dtype(), grad.device());
    ops::scale(scaled, grad, static_cast<float>(factor));
    grad = scaled;
  }
  // Without dp_share, DataParallel's backward hook stays idle: the gradients are all-reduced
  // once per step, by the backward of its last micro-batch.
  if (dp_share) dp_->prepare(*dp_share);
  model_.backward(grad);
  if (dp_share) dp_->synchronize();
  return loss;
}

void Trainer::apply_step(const std::vector<Parameter*>& params, double rescale) {
  if (rescale != 1.0) {
    for (Parameter* p : params) ops::scale(p->grad, p->grad, static_cast<float>(rescale));
  }
  // Under ZeRO-1 a rank holds the summed gradients of its own share only: it checks and
  // clips those, and the ranks agree on the finite flag and the norm by collectives.
  const bool sharded = dp_ && options_.data_parallel.zero1;
  const std::vector<Parameter*>& checked = sharded ? own_params_ : params;
  bool apply = true;
  if (scaler_) {
    bool finite = checked.empty() || LossScaler::gradients_finite(checked);
    if (sharded) finite = !any_rank(!finite);
    if (finite && !checked.empty()) scaler_->unscale(checked);
    apply = scaler_->update(!finite);
  }
  if (apply) {
    if (options_.clip_grad_norm > 0.0f) clip_sharded_or_not(checked, sharded);
    optimizer_.step();
    if (dp_) dp_->after_step();
  }
}

bool Trainer::graph_step(const Tensor& x, const Tensor& y, std::int64_t n, std::int64_t n_global,
                         const std::vector<Parameter*>& params, Tensor& loss, Tensor& correct) {
  if (graph_x_.defined() && (x.shape() != graph_x_.shape() || y.shape() != graph_y_.shape())) return false;
  if (!graph_x_.defined()) {
    // The first batch fixes the graph's shapes; its buffers are made outside any capture.
    graph_x_ = Tensor::empty(x.shape(), x.dtype(), x.device());
    graph_y_ = Tensor::empty(y.shape(), y.dtype(), y.device());
  }
  // Warm-up makes what the first steps create lazily (optimizer state, batch-norm scratch,
  // cuDNN's algorithm choices), so that none of it happens inside the capture.
  if (graph_ == nullptr && graph_warmup_ < kGraphWarmupSteps) {
    ++graph_warmup_;
    return false;
  }
  ops::copy(graph_x_, x);
  ops::copy(graph_y_, y);
  // The learning rate and the other per-step values go to device memory outside the graph,
  // which reads them there.
  optimizer_.upload_step_values();
  if (graph_ != nullptr && optimizer_.launch_version() != graph_launch_version_) {
    // A kernel argument of the optimizer changed (a parameter group's factor) or its memory
    // moved: capture anew.
    graph_.reset();
    ++graph_recaptures_;
  }
  if (graph_ == nullptr) {
    graph_launch_version_ = optimizer_.launch_version();
    // Host-side effects of step() happen once, at capture: the replay below is that step.
    const std::int64_t steps = optimizer_.steps();
    // The random streams (dropout) reserve their offsets on the host once, at capture; their
    // kernels count device copies up at each replay, and the host follows by the same amounts.
    const std::vector<Generator*> generators = model_.generators();
    std::vector<std::uint64_t> offsets;
    for (Generator* g : generators) offsets.push_back(g->offset());
    try {
      graph_ = std::make_unique<CudaGraph>(model_.device(), [&] {
        graph_loss_ = compute_step(graph_x_, graph_y_, n, n_global, params);
        graph_correct_ = loss_.correct();
      });
    } catch (const Error& e) {
      graph_on_ = false;
      optimizer_.set_steps(steps);
      for (std::size_t i = 0; i < generators.size(); ++i) generators[i]->set_state(generators[i]->seed(), offsets[i]);
      graph_x_ = graph_y_ = graph_loss_ = graph_correct_ = Tensor();
      if (rank_ == 0) std::fprintf(stderr, "cuda graph: capture failed, running eagerly: %s\n", e.what());
      return false;
    }
    graph_advances_.clear();
    for (std::size_t i = 0; i < generators.size(); ++i) {
      graph_advances_.emplace_back(generators[i], generators[i]->offset() - offsets[i]);
    }
    graph_->replay();
  } else {
    graph_->replay();
    optimizer_.set_steps(optimizer_.steps() + 1);
    for (auto& [generator, count] : graph_advances_) generator->advance(count);
  }
  loss = graph_loss_;
  correct = graph_correct_;
  return true;
}

std::string Trainer::graph_blocker() const {
  if (options_.accumulate > 1) {
    return "gradient accumulation (accumulate " + std::to_string(options_.accumulate) +
           ") runs several backward passes per optimizer step";
  }
  if (dp_) return "data parallelism's all-reduces are not captured";
  if (scaler_) return "fp16's loss scaling reads the finite flag back at every step";
  if (options_.after_step && !options_.after_step_graph_safe) {
    return "the after_step hook runs host code at every step (set after_step_graph_safe if a replay may precede it)";
  }
  if (std::string why = model_.capture_blocker(); !why.empty()) return why;
  // Last, so that the reasons above can be seen (and tested) on any device.
  const Device device = model_.device();
  if (!device.is_cuda()) return "the model is on " + device.str() + "; CUDA graphs need a CUDA device";
  return "";
}

void Trainer::check_recent_losses() {
  if (recent_count_ == 0) return;
  // Summed over the ranks, a non-finite loss on any of them stops them all at once.
  if (dp_) dp_->group().all_reduce(recent_losses_.slice(0, recent_count_));
  const auto losses = recent_losses_.slice(0, recent_count_).to_vector<float>();
  // The losses are the micro-batches' of whole steps of this epoch: micro-batch q (from 0) is
  // in step q / accumulate of the epoch, whose steps done so far are position_ / accumulate
  // rounded up.
  const std::int64_t k = options_.accumulate;
  const std::int64_t epoch_first_step = step_ - (position_ + k - 1) / k;
  for (std::size_t i = 0; i < losses.size(); ++i) {
    if (!std::isfinite(losses[i])) {
      const std::int64_t q = position_ - recent_count_ + static_cast<std::int64_t>(i);
      const std::int64_t bad_step = epoch_first_step + q / k + 1;
      const std::int64_t batch = q + 1;
      std::string msg = "loss is " + std::string(std::isnan(losses[i]) ? "NaN" : "infinite") + " at step " +
                        std::to_string(bad_step) + " (epoch " + std::to_string(epoch_ + 1) + ", batch " +
                        std::to_string(batch) + "); training stopped";
      msg += last_checkpoint_.empty() ? ", no checkpoint written"
                                      : "; " + last_checkpoint_ + " keeps the last good state";
      recent_count_ = recent_steps_ = 0;
      throw DivergenceError(msg);
    }
  }
  recent_count_ = recent_steps_ = 0;
}

void Trainer::describe_run_to_tensorboard() {
  std::int64_t parameters = 0;
  for (Parameter* p : model_.parameters()) parameters += p->value.numel();
  std::string settings = "| setting | value |\n| --- | --- |\n";
  const auto row = [&settings](const std::string& name, const std::string& value) {
    settings += "| " + name + " | " + value + " |\n";
  };
  const Device device = model_.device();
  row("device", device.is_cpu() ? std::string("cpu") : device.str() + " (" + device.name() + ")");
  row("precision", precision_name(precision_));
  row("ranks", std::to_string(world_));
  for (const auto& [name, value] : order_) row(name, value);
  row("epochs", std::to_string(options_.epochs));
  row("optimizer", optimizer_.kind());
  for (const auto& [name, value] : optimizer_.hyperparameters()) row("optimizer " + name, format_number(value));
  row("schedule", options_.schedule ? options_.schedule->describe() : "none");
  if (options_.clip_grad_norm > 0.0f) row("clip_grad_norm", format_number(options_.clip_grad_norm));
  if (!options_.resume.empty()) row("resumed from", options_.resume + " at step " + std::to_string(step_));
  tensorboard_->text("run/settings", settings, step_);
  // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive) on "`" + string here.
  std::string model = "`";
  model += model_.describe();
  model += "`, " + std::to_string(parameters) + " parameters";
  tensorboard_->text("run/model", model, step_);
}

void Trainer::report_progress(std::int64_t batches, double samples_per_second, bool end_of_epoch) {
  // Every rank takes part in the sums whatever its own progress setting (a job may turn
  // progress off on the ranks that do not print); rank 0 prints if its setting says so.
  if (!options_.progress && !dp_ && tensorboard_ == nullptr) return;
  const auto [loss_sum, correct_sum] = epoch_sums();
  const double samples = static_cast<double>(std::max<std::int64_t>(acc_samples_, 1));
  if (tensorboard_ != nullptr && !end_of_epoch) {
    // The epoch's running means so far, as the progress line shows them.
    tensorboard_->scalar("train/loss", loss_sum / samples, step_);
    if (loss_.correct().defined()) tensorboard_->scalar("train/accuracy", correct_sum / samples, step_);
    tensorboard_->scalar("train/samples_per_second", samples_per_second, step_);
    tensorboard_->scalar("train/lr", optimizer_.lr(), step_);
    if (scaler_) tensorboard_->scalar("train/loss_scale", scaler_->scale(), step_);
  }
  if (!options_.progress || rank_ != 0) return;
  const double done = static_cast<double>(position_) / static_cast<double>(std::max<std::int64_t>(batches, 1));
  const double elapsed = detail::seconds_now() - epoch_start_;
  const double eta = done > 0 && !end_of_epoch ? elapsed / done - elapsed : 0.0;
  // Shown in optimizer steps: with accumulation, K micro-batches (the epoch's last maybe fewer) each.
  const std::int64_t k = options_.accumulate;
  const std::int64_t steps = (batches + k - 1) / k;
  const std::int64_t shown = end_of_epoch ? steps : (position_ + k - 1) / k;
  char acc[32] = "";
  if (loss_.correct().defined()) std::snprintf(acc, sizeof acc, " acc %.2f%%", 100.0 * correct_sum / samples);
  const bool tty = isatty(fileno(stderr)) != 0;
  if (tty) {
    constexpr int kWidth = 24;
    const int filled = end_of_epoch ? kWidth : static_cast<int>(done * kWidth);
    std::string bar(static_cast<std::size_t>(filled), '=');
    bar.resize(kWidth, ' ');
    std::fprintf(stderr, "\repoch %lld/%d [%s] %lld/%lld loss %.4f%s %.0f samples/s %s %s%s",
                 static_cast<long long>(end_of_epoch ? epoch_ : epoch_ + 1), total_epochs_, bar.c_str(),
                 static_cast<long long>(shown), static_cast<long long>(steps), loss_sum / samples, acc,
                 samples_per_second, end_of_epoch ? "took" : "ETA", format_duration(end_of_epoch ? elapsed : eta).c_str(),
                 end_of_epoch ? "\n" : "");
  } else {
    std::fprintf(stderr, "epoch %lld/%d step %lld/%lld loss %.4f%s %.0f samples/s %s %s\n",
                 static_cast<long long>(end_of_epoch ? epoch_ : epoch_ + 1), total_epochs_,
                 static_cast<long long>(shown), static_cast<long long>(steps), loss_sum / samples, acc,
                 samples_per_second, end_of_epoch ? "took" : "ETA",
                 format_duration(end_of_epoch ? elapsed : eta).c_str());
  }
}

// One evaluation's sums on the device: the loss weighted by each batch's count, and the
// loss's correct predictions; read back once at the end.
class Trainer::EvalSums {
 public:
  // `shared`: each rank saw its own part of the data, and result() sums over the ranks.
  EvalSums(Trainer& t, bool shared) : t_(t), device_(t.model_.device()), shared_(shared && t.dp_) {}
  // Forward of one batch in eval mode (with options.eval_augment), its loss counted `weight` times.
  void add(Tensor x, const Tensor& labels, std::int64_t weight) {
    x = x.to(device_);
    if (t_.options_.eval_augment) {
      Tensor normalised = Tensor::empty(x.shape(), DType::kF32, device_);
      data::augment(normalised, x, *t_.options_.eval_augment, 0, 0, Context::get(device_).exec());
      x = normalised;
    }
    const Tensor loss = t_.loss_.forward(t_.model_.forward(x), labels.to(device_));
    ops::axpy(loss_sum_, static_cast<float>(weight), loss);
    if (t_.loss_.correct().defined()) {
      ops::add(correct_sum_, correct_sum_, t_.loss_.correct());
      counts_ = true;
    }
    samples_ += weight;
  }
  EvalResult result() const {
    float loss_sum = 0.0f, correct_sum = 0.0f;
    std::int64_t samples = samples_;
    bool counts = counts_;
    if (shared_) {
      Tensor sums = Tensor::empty({4}, DType::kF32, device_);
      ops::copy(sums.slice(0, 1), loss_sum_);
      ops::copy(sums.slice(1, 2), correct_sum_);
      // Counts as floats are exact to 2^24 samples per rank, far beyond an evaluation set.
      ops::copy(sums.slice(2, 4),
                Tensor::from_vector(std::vector<float>{static_cast<float>(samples_), counts_ ? 1.0f : 0.0f}, {2})
                    .to(device_));
      t_.dp_->group().all_reduce(sums);
      const std::vector<float> v = sums.to_vector<float>();
      loss_sum = v[0];
      correct_sum = v[1];
      samples = static_cast<std::int64_t>(v[2]);
      counts = v[3] > 0.0f;
    } else {
      loss_sum = loss_sum_.to_vector<float>()[0];
      correct_sum = correct_sum_.to_vector<float>()[0];
    }
    EvalResult r;
    r.samples = samples;
    const double n = static_cast<double>(std::max<std::int64_t>(samples, 1));
    r.loss = loss_sum / n;
    r.accuracy = counts ? correct_sum / n : std::nan("");
    return r;
  }

 private:
  Trainer& t_;
  Device device_;
  Tensor loss_sum_ = Tensor::zeros({1}, DType::kF32, device_);
  Tensor correct_sum_ = Tensor::zeros({1}, DType::kF32, device_);
  bool shared_;
  bool counts_ = false;
  std::int64_t samples_ = 0;
};

EvalResult Trainer::evaluate(const data::TensorDataset& data) {
  const bool was_training = model_.is_training();
  model_.eval();
  if (dp_) dp_->broadcast_buffers();
  EvalSums sums(*this, true);
  // Rank r evaluates samples [r N / W, (r + 1) N / W).
  const std::int64_t first = data.size() * rank_ / world_, last = data.size() * (rank_ + 1) / world_;
  for (std::int64_t start = first; start < last; start += options_.eval_batch) {
    const std::int64_t stop = std::min(start + options_.eval_batch, last);
    sums.add(data.inputs().slice(start, stop), data.labels().slice(start, stop), stop - start);
  }
  model_.set_training(was_training);
  return sums.result();
}

EvalResult Trainer::evaluate(data::BatchSource& source) {
  const bool was_training = model_.is_training();
  model_.eval();
  // A source's batches may depend on each other (text streams carry state), so every rank
  // evaluates all of it, with rank 0's batch-norm statistics.
  if (dp_) dp_->broadcast_buffers();
  EvalSums sums(*this, false);
  if (options_.on_epoch_start) options_.on_epoch_start();
  data::Batch batch;
  for (std::int64_t k = 0; k < source.batches_per_epoch(); ++k) {
    source.fill(0, k, batch);
    // Weighted by its labels: a mean per token for StreamBatches.
    sums.add(batch.inputs, batch.labels, batch.labels.numel());
    if (options_.after_step) options_.after_step();
  }
  model_.set_training(was_training);
  return sums.result();
}

void Trainer::save_checkpoint(const std::string& path) {
  check_recent_losses();
  // A loss can be finite while the update it produced is not (an infinite gradient): look at
  // the parameters themselves before replacing a good checkpoint.
  const std::vector<Parameter*> params = model_.parameters();
  if (!params.empty()) {
    Tensor total = Tensor::zeros({1}, DType::kF32, model_.device());
    for (Parameter* p : params) {
      const Tensor flat = p->value.reshape({-1});
      ops::add(total, total, ops::sum(ops::mul(flat, flat), 0).reshape({1}));
    }
    if (!std::isfinite(total.to_vector<float>()[0])) {
      throw DivergenceError("parameters are not finite at step " + std::to_string(step_) +
                            "; not overwriting " + path);
    }
  }
  // The epoch's sums over every rank (collectives: before the other ranks leave).
  const auto [loss_sum, correct_sum] = epoch_sums();
  if (dp_) dp_->gather_optimizer_state(optimizer_);
  struct ReleaseState {
    dist::DataParallel* dp;
    Optimizer& optimizer;
    ~ReleaseState() {
      if (dp != nullptr) dp->release_optimizer_state(optimizer);
    }
  } release{dp_.get(), optimizer_};
  std::vector<NamedTensor> extra;
  if (options_.checkpoint_extra) extra = options_.checkpoint_extra();
  for (const auto& [name, t] : extra) {
    if (is_reserved_name(name)) {
      throw ValueError("Trainer: extra checkpoint entry '" + name +
                       "' would be taken for the model's, optimizer's or trainer's own state");
    }
  }
  // Extras may differ between ranks (a carried recurrent state of other streams): they are
  // gathered, so every rank resumes with its own, rank r >= 1's as "<name>.rank<r>". (Generator
  // offsets need no such care: every draw takes one offset, so they move alike on all ranks.)
  std::vector<NamedTensor> other_ranks;
  if (dp_ && world_ > 1) {
    dist::ProcessGroup& group = dp_->group();
    for (const auto& [name, t] : extra) {
      const Tensor mine = t.to(model_.device()).reshape({-1});
      Tensor all = Tensor::empty({world_ * mine.numel()}, mine.dtype(), model_.device());
      group.all_gather(all, mine);
      for (int r = 1; r < world_ && rank_ == 0; ++r) {
        other_ranks.emplace_back(name + ".rank" + std::to_string(r),
                                 all.slice(r * mine.numel(), (r + 1) * mine.numel()).reshape(t.shape().dims()).to(Device::cpu()));
      }
    }
  }
  if (rank_ != 0) {
    last_checkpoint_ = path;
    saved_step_ = step_;
    return;
  }
  std::vector<NamedTensor> tensors;
  for (auto& [name, t] : model_.state()) tensors.emplace_back("model." + name, t);
  for (auto& [name, t] : optimizer_.state()) tensors.emplace_back("optimizer." + name, t);
  for (auto& [name, t] : extra) tensors.emplace_back(name, t);
  for (auto& [name, t] : other_ranks) tensors.emplace_back(name, t);
  if (scaler_) tensors.emplace_back("trainer.loss_scaler", scaler_->state());
  if (ema_) {
    for (auto& [name, t] : ema_->state("trainer.ema.")) tensors.emplace_back(name, t);
  }
  if (loss_acc_.defined()) {
    tensors.emplace_back("trainer.loss_sum", Tensor::full({1}, loss_sum, DType::kF32, Device::cpu()));
    tensors.emplace_back("trainer.correct_sum", Tensor::full({1}, correct_sum, DType::kF32, Device::cpu()));
  }
  json::Array rng;
  // As decimal strings: JSON numbers cannot hold every 64-bit seed exactly.
  for (Generator* g : model_.generators()) {
    rng.push_back(json::Array{std::to_string(g->seed()), std::to_string(g->offset())});
  }
  json::Object hyper;
  for (auto& [k, v] : optimizer_.hyperparameters()) hyper.emplace_back(k, v);
  const std::vector<std::pair<std::string, std::string>> metadata = {
      {"format", kCheckpointFormat},
      {"step", std::to_string(step_)},
      {"epoch", std::to_string(epoch_)},
      {"position", std::to_string(position_)},
      {"samples_in_epoch", std::to_string(acc_samples_)},
      {"data_seed", std::to_string(options_.seed)},
      {"optimizer", optimizer_.kind()},
      {"optimizer_hyperparameters", json::dump(hyper)},
      {"schedule", options_.schedule ? options_.schedule->describe() : "none"},
      {"rng", json::dump(rng)},
      {"precision", precision_name(precision_)},
  };
  std::vector<std::pair<std::string, std::string>> meta = metadata;
  if (order_.empty()) {
    // Saved outside fit(): the options are all that says what the order was.
    meta.emplace_back("batch", std::to_string(options_.batch));
    meta.emplace_back("shuffle", options_.shuffle ? "1" : "0");
  } else {
    json::Object order;
    for (const auto& [k, v] : order_) {
      order.emplace_back(k, v);
      // Kept under their old names as well, for readers from before "data_order".
      if (k == "batch" || k == "shuffle") meta.emplace_back(k, v);
    }
    meta.emplace_back("data_order", json::dump(json::Value(order)));
  }
  meta.insert(meta.end(), options_.checkpoint_metadata.begin(), options_.checkpoint_metadata.end());
  save_safetensors(path, tensors, meta);
  last_checkpoint_ = path;
  saved_step_ = step_;
}

void Trainer::load_checkpoint(const std::string& path, const data::BatchSource* source) {
  const SafetensorsContents file = load_safetensors(path);
  if (file.metadata_value("format") != kCheckpointFormat) {
    throw IoError(path + ": not a libgpudl checkpoint (metadata format is '" + file.metadata_value("format") + "')");
  }
  if (file.metadata_value("optimizer") != optimizer_.kind()) {
    throw ValueError(path + ": saved with optimizer '" + file.metadata_value("optimizer") + "' but resuming with '" +
                     optimizer_.kind() + "'");
  }
  std::vector<NamedTensor> model_state, optimizer_state, extra;
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind("model.", 0) == 0) {
      model_state.emplace_back(name.substr(6), t);
    } else if (name.rfind("optimizer.", 0) == 0) {
      optimizer_state.emplace_back(name.substr(10), t);
    } else if (!is_reserved_name(name)) {
      extra.emplace_back(name, t);
    }
  }
  // Extras saved per rank ("<name>.rank<r>", rank r >= 1): this rank takes its own in place of
  // rank 0's, and the per-rank copies are no business of restore_extra.
  {
    auto is_rank_copy = [&extra](const std::string& name, int* r) {
      const std::size_t dot = name.rfind(".rank");
      if (dot == std::string::npos || dot + 5 >= name.size()) return false;
      const std::string digits = name.substr(dot + 5);
      if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 6) return false;
      const std::string base = name.substr(0, dot);
      bool has_base = false;
      for (const auto& [n, t] : extra) has_base = has_base || n == base;
      *r = std::stoi(digits);
      return has_base;
    };
    std::vector<NamedTensor> own;
    std::vector<std::pair<std::string, Tensor>> mine;  // base name -> this rank's copy
    for (const auto& [name, t] : extra) {
      int r = 0;
      if (is_rank_copy(name, &r)) {
        if (r == rank_) mine.emplace_back(name.substr(0, name.rfind(".rank")), t);
      } else {
        own.emplace_back(name, t);
      }
    }
    for (auto& [name, t] : own) {
      for (const auto& [base, copy] : mine) {
        if (base == name) t = copy;
      }
    }
    extra = std::move(own);
  }
  // First, so that a driver refusing the file (another vocabulary) says so before a shape
  // mismatch that would follow from the same cause.
  if (options_.restore_extra) options_.restore_extra(path, extra);
  // Named with the file: "load_state: ..." alone would not say which checkpoint is at fault.
  try {
    model_.load_state(model_state);
    optimizer_.load_state(optimizer_state);
    if (ema_) {
      // A checkpoint of a run without the average starts it at the weights it holds.
      ema_ = std::make_unique<WeightAverage>(model_);
      const bool saved = std::any_of(file.tensors.begin(), file.tensors.end(),
                                     [](const NamedTensor& e) { return e.first.starts_with("trainer.ema."); });
      if (saved) ema_->load_state(file.tensors, "trainer.ema.");
    }
  } catch (const Error& e) {
    throw ValueError(path + ": not a checkpoint of this model: " + e.what());
  }
  auto number = [&](const char* key) {
    const std::string v = file.metadata_value(key);
    try {
      return std::stoll(v);
    } catch (const std::exception&) {
      throw IoError(path + ": metadata '" + key + "' is '" + v + "', expected an integer");
    }
  };
  step_ = number("step");
  epoch_ = number("epoch");
  position_ = number("position");
  resumed_samples_ = number("samples_in_epoch");
  // The whole 64-bit range (stoll would refuse seeds from 2^63 on).
  const std::string seed_text = file.metadata_value("data_seed");
  std::uint64_t saved_seed = 0;
  try {
    std::size_t used = 0;
    saved_seed = std::stoull(seed_text, &used);
    if (used != seed_text.size() || seed_text.empty() || seed_text[0] == '-') throw std::invalid_argument("");
  } catch (const std::exception&) {
    throw IoError(path + ": metadata 'data_seed' is '" + seed_text + "', expected an unsigned integer");
  }
  // The saved order wins (a resume continues the run it came from); say so when it differs.
  if (options_.progress && rank_ == 0 && saved_seed != options_.seed) {
    std::fprintf(stderr, "note: the data seed %llu of %s is used, not %llu\n",
                 static_cast<unsigned long long>(saved_seed), path.c_str(),
                 static_cast<unsigned long long>(options_.seed));
  }
  options_.seed = saved_seed;
  // Compared with the data source when fit() starts: only it knows its settings.
  data::OrderSettings order;
  const std::string order_text = file.metadata_value("data_order");
  if (!order_text.empty()) {
    const json::Value saved = json::parse(order_text);
    if (!saved.is_object()) throw IoError(path + ": metadata 'data_order' is not a JSON object");
    for (const auto& [k, v] : saved.as_object()) {
      if (!v.is_string()) throw IoError(path + ": metadata 'data_order' entry '" + k + "' is not a string");
      order.emplace_back(k, v.as_string());
    }
  } else {
    order.emplace_back("batch", std::to_string(number("batch")));
    if (!file.metadata_value("shuffle").empty()) order.emplace_back("shuffle", file.metadata_value("shuffle"));
  }
  resumed_order_ = order;
  resumed_order_legacy_ = order_text.empty();
  resumed_path_ = path;
  const json::Value rng = json::parse(file.metadata_value("rng"));
  const std::vector<Generator*> gens = model_.generators();
  if (rng.size() != gens.size()) {
    throw ValueError(path + ": holds " + std::to_string(rng.size()) + " generator states, the model has " +
                     std::to_string(gens.size()));
  }
  for (std::size_t i = 0; i < gens.size(); ++i) {
    gens[i]->set_state(std::stoull(rng.at(i).at(0).as_string()), std::stoull(rng.at(i).at(1).as_string()));
  }
  apply_rank_seeds();  // the file holds rank 0's
  if (dp_) dp_->release_optimizer_state(optimizer_);
  // fp16's scale continues where it was; a checkpoint from another precision has none, and
  // the scaler then starts from its initial scale.
  if (const Tensor* scaler_state = file.find("trainer.loss_scaler"); scaler_state != nullptr && scaler_) {
    scaler_->restore(*scaler_state);
  }
  const Tensor* loss_sum = file.find("trainer.loss_sum");
  const Tensor* correct_sum = file.find("trainer.correct_sum");
  resumed_loss_ = loss_sum != nullptr ? loss_sum->to(model_.device()).clone() : Tensor();
  resumed_correct_ = correct_sum != nullptr ? correct_sum->to(model_.device()).clone() : Tensor();
  // The file holds the sums over every rank: rank 0 carries them on, the others start at 0.
  if (rank_ != 0) {
    if (resumed_loss_.defined()) resumed_loss_.fill_(0.0);
    if (resumed_correct_.defined()) resumed_correct_.fill_(0.0);
  }
  last_checkpoint_ = path;
  saved_step_ = step_;
  resumed_ = true;
  if (source != nullptr) check_resumed_order(*source);
}

}  // namespace gpudl
