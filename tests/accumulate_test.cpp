// Gradient accumulation (TrainerOptions::accumulate): K micro-batches per optimizer step train as
// one batch K times larger, and steps, schedules, checkpoints, fp16 and clipping count steps.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"
#include "test_util.h"

namespace gpudl {
namespace {

namespace fs = std::filesystem;

using testing::blobs;

// Summing four micro-batch gradients instead of one 128-sample GEMM reorders FP32 sums (a few
// ulps, 1e-7 relative); over six steps the parameters were measured within 7e-8 and the step
// losses within 3e-7 (norm-wise, 12 seeds). 5e-6 leaves room for other seeds and is far below
// what a wrong weighting gives (a short group weighted as a full one: 3e-3).
constexpr double kTolerance = 5e-6;

// 300 samples: at batch 128, two full steps and one of 44 per epoch; at 32, nine micro-batches
// and one of 12, so with accumulate 4 the groups are 4, 4 and 2 micro-batches of the same samples.
constexpr std::int64_t kSamples = 300;

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("gpudl_accumulate_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

// No batch norm (its statistics are per micro-batch) and, unless asked, no dropout (whose masks
// depend on how the samples are cut): the large batch is then the same function of the weights.
Sequential make_net(std::uint64_t seed, bool dropout = false) {
  manual_seed(seed);
  Sequential net{Linear(8, 16), Tanh(), Linear(16, 16), ReLU()};
  if (dropout) net.add(std::make_unique<Dropout>(0.2f));
  net.add(std::make_unique<Linear>(16, 3));
  return net;
}

std::vector<float> flat_parameters(Module& m) {
  std::vector<float> all;
  for (Parameter* p : m.parameters()) {
    for (float v : p->value.to_vector<float>()) all.push_back(v);
  }
  return all;
}

TrainerOptions options(std::int64_t batch, std::int64_t accumulate) {
  TrainerOptions o;
  o.batch = batch;
  o.accumulate = accumulate;
  o.epochs = 2;
  o.seed = 5;
  o.log_every = 2;
  o.progress = false;
  o.record_step_losses = true;
  o.schedule = std::make_shared<CosineLR>(0.05, 6);  // 6 optimizer steps in two epochs
  return o;
}

using MakeOptimizer = std::function<std::unique_ptr<Optimizer>(const std::vector<Parameter*>&)>;

std::unique_ptr<Optimizer> sgd(const std::vector<Parameter*>& p) {
  return std::make_unique<SGD>(p, SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3});
}
std::unique_ptr<Optimizer> adam(const std::vector<Parameter*>& p) {
  return std::make_unique<Adam>(p, AdamOptions{.lr = 0.01});
}

struct Outcome {
  std::vector<float> parameters, losses;
  std::int64_t steps = 0, optimizer_steps = 0;
};

Outcome train(const data::TensorDataset& data, const TrainerOptions& o, const MakeOptimizer& make,
          bool dropout = false) {
  Sequential net = make_net(3, dropout);
  const std::unique_ptr<Optimizer> opt = make(net.parameters());
  CrossEntropyLoss loss;
  Trainer t(net, *opt, loss, o);
  t.fit(data);
  return {flat_parameters(net), t.step_losses(), t.global_step(), opt->steps()};
}

void expect_close(const Outcome& a, const Outcome& b) {
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.optimizer_steps, b.optimizer_steps);
  EXPECT_LT(testing::relative_error(a.parameters, b.parameters), kTolerance);
  ASSERT_EQ(a.losses.size(), b.losses.size());
  // A step's loss is the mean over its samples, whichever way they were cut.
  EXPECT_LT(testing::relative_error(a.losses, b.losses), kTolerance);
}

TEST(Accumulate, FourMicroBatchesOf32TrainAsOneBatchOf128) {
  const data::TensorDataset data = blobs(kSamples, 1);
  for (const auto& [name, make] : {std::pair<const char*, MakeOptimizer>{"sgd", sgd}, {"adam", adam}}) {
    SCOPED_TRACE(name);
    const Outcome large = train(data, options(128, 1), make);
    const Outcome accumulated = train(data, options(32, 4), make);
    ASSERT_EQ(large.steps, 6);
    expect_close(accumulated, large);
    // And not by accident: the same micro-batches stepped one at a time end elsewhere.
    TrainerOptions single = options(32, 1);
    single.schedule = nullptr;
    EXPECT_GT(testing::relative_error(train(data, single, make).parameters, large.parameters), 100 * kTolerance);
  }
}

// The norm clipped is the accumulated gradient's: clipping each micro-batch would not give the
// large batch's steps.
TEST(Accumulate, ClippingAppliesToTheAccumulatedGradient) {
  const data::TensorDataset data = blobs(kSamples, 2);
  TrainerOptions large = options(128, 1), accumulated = options(32, 4);
  large.clip_grad_norm = accumulated.clip_grad_norm = 0.05f;  // well below the blobs' gradient norms
  expect_close(train(data, accumulated, sgd), train(data, large, sgd));
}

// One rank through the data-parallel path: the all-reduce runs once per step, with the
// rescale of a short group, and gives what the plain path gives.
TEST(Accumulate, OneRankDataParallelAccumulatesAsWithout) {
  const data::TensorDataset data = blobs(kSamples, 3);
  TrainerOptions o = options(32, 4);
  o.distributed = false;
  const Outcome plain = train(data, o, adam);
  o.distributed = true;
  const Outcome dp = train(data, o, adam);
  EXPECT_EQ(dp.parameters, plain.parameters);
  o.data_parallel.zero1 = true;
  EXPECT_EQ(train(data, o, adam).parameters, plain.parameters);
  o.data_parallel = {.overlap = false};
  EXPECT_EQ(train(data, o, adam).parameters, plain.parameters);
}

// Records every step number it is asked about.
class RecordingLR final : public Schedule {
 public:
  explicit RecordingLR(std::vector<std::int64_t>* seen) : seen_(seen) {}
  double lr_at(std::int64_t step) const override {
    seen_->push_back(step);
    return 0.01 / static_cast<double>(step + 1);
  }
  std::string describe() const override { return "RecordingLR"; }

 private:
  std::vector<std::int64_t>* seen_;
};

TEST(Accumulate, StepsSchedulesAndCheckpointsCountOptimizerSteps) {
  const data::TensorDataset data = blobs(kSamples, 4);
  std::vector<std::int64_t> seen;
  Sequential net = make_net(4);
  Adam opt(net.parameters());
  CrossEntropyLoss loss;
  TrainerOptions o = options(32, 4);
  o.schedule = std::make_shared<RecordingLR>(&seen);
  o.checkpoint = scratch("count.safetensors").string();
  o.checkpoint_every = 2;
  o.stop_after_steps = 5;  // the second step of epoch 2: micro-batches 5 to 8 of it
  std::vector<std::int64_t> after;
  o.after_step = [&] { after.push_back(opt.steps()); };
  Trainer t(net, opt, loss, o);
  const FitResult r = t.fit(data);
  EXPECT_EQ(r.steps, 5);
  EXPECT_EQ(t.global_step(), 5);
  EXPECT_EQ(opt.steps(), 5) << "Adam's bias correction counts optimizer steps";
  EXPECT_EQ(t.step_losses().size(), 5u);
  EXPECT_EQ(after, (std::vector<std::int64_t>{1, 2, 3, 4, 5})) << "after_step runs once per optimizer step";
  // Every micro-batch of step s asks for lr_at(s): 4 + 4 + 2 of epoch 1, then 4 + 4.
  const std::vector<std::int64_t> expected{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4};
  EXPECT_EQ(seen, expected);
  EXPECT_DOUBLE_EQ(opt.lr(), 0.01 / 5.0);
  const SafetensorsContents saved = load_safetensors(o.checkpoint);
  EXPECT_EQ(saved.metadata_value("step"), "5");
  EXPECT_EQ(saved.metadata_value("epoch"), "1");
  EXPECT_EQ(saved.metadata_value("position"), "8") << "micro-batches done in the epoch";
  EXPECT_NE(saved.metadata_value("data_order").find("\"accumulate\":\"4\""), std::string::npos)
      << saved.metadata_value("data_order");
}

// A stop by time comes at a step's end, never inside one.
TEST(Accumulate, AStopByTimeWaitsForTheStepsLastMicroBatch) {
  const data::TensorDataset data = blobs(kSamples, 5);
  Sequential net = make_net(5);
  Adam opt(net.parameters());
  CrossEntropyLoss loss;
  TrainerOptions o = options(32, 4);
  o.checkpoint = scratch("time.safetensors").string();
  o.max_seconds = 1e-9;
  Trainer t(net, opt, loss, o);
  const FitResult r = t.fit(data);
  EXPECT_TRUE(r.out_of_time);
  EXPECT_EQ(r.steps, 1);
  EXPECT_EQ(load_safetensors(o.checkpoint).metadata_value("position"), "4");
}

TEST(Accumulate, AResumedRunRepeatsTheUninterruptedOneBitForBit) {
  const data::TensorDataset data = blobs(kSamples, 6);
  TrainerOptions o = options(32, 4);
  o.epochs = 3;
  o.schedule = std::make_shared<CosineLR>(0.01, 9);
  // Dropout: its generator's offset must come back from the checkpoint too.
  const Outcome full = train(data, o, adam, true);
  ASSERT_EQ(full.steps, 9);
  const std::string ckpt = scratch("resume.safetensors").string();
  for (std::int64_t stop : {1, 3, 4}) {  // inside epoch 1, at its end, inside epoch 2
    SCOPED_TRACE("stopped after step " + std::to_string(stop));
    TrainerOptions first = o;
    first.checkpoint = ckpt;
    first.stop_after_steps = stop;
    const Outcome part = train(data, first, adam, true);
    ASSERT_EQ(part.steps, stop);
    for (std::size_t i = 0; i < part.losses.size(); ++i) ASSERT_EQ(part.losses[i], full.losses[i]) << i;
    TrainerOptions rest = o;
    rest.resume = ckpt;
    Sequential net = make_net(99, true);  // other weights: everything must come from the file
    Adam opt(net.parameters(), {.lr = 0.01});
    CrossEntropyLoss loss;
    Trainer t(net, opt, loss, rest);
    t.fit(data);
    EXPECT_EQ(t.global_step(), 9);
    ASSERT_EQ(t.step_losses().size(), static_cast<std::size_t>(9 - stop));
    for (std::size_t i = 0; i < t.step_losses().size(); ++i) {
      EXPECT_EQ(t.step_losses()[i], full.losses[static_cast<std::size_t>(stop) + i]) << "step " << stop + 1 + i;
    }
    EXPECT_EQ(flat_parameters(net), full.parameters);
  }
}

TEST(Accumulate, AResumeWithAnotherAccumulateIsRefusedNamingIt) {
  const data::TensorDataset data = blobs(kSamples, 7);
  auto checkpoint_of = [&](std::int64_t accumulate, const std::string& name) {
    TrainerOptions o = options(32, accumulate);
    o.checkpoint = scratch(name).string();
    o.stop_after_steps = 1;
    train(data, o, adam);
    return o.checkpoint;
  };
  auto resume_error = [&](const std::string& ckpt, std::int64_t accumulate) {
    TrainerOptions o = options(32, accumulate);
    o.resume = ckpt;
    return testing::error_of<ValueError>([&] { train(data, o, adam); });
  };
  const std::string four = checkpoint_of(4, "four.safetensors"), one = checkpoint_of(1, "one.safetensors");
  std::string m = resume_error(four, 2);
  EXPECT_NE(m.find("saved with accumulate 4 but resuming with accumulate 2"), std::string::npos) << m;
  m = resume_error(one, 4);
  EXPECT_NE(m.find("saved with accumulate (not set) but resuming with accumulate 4"), std::string::npos) << m;
  m = resume_error(four, 1);
  EXPECT_NE(m.find("saved with accumulate 4 but resuming with accumulate (not set)"), std::string::npos) << m;
  EXPECT_EQ(resume_error(four, 4), "(no exception)");
}

// Passes everything through, except that backward number `at` multiplies its gradient by
// infinity: an fp16 overflow on demand.
class OverflowAt : public Module {
 public:
  explicit OverflowAt(int at) : at_(at) {}
  Tensor forward(const Tensor& x) override { return x; }
  Tensor backward(const Tensor& grad_output) override {
    if (++calls_ != at_) return grad_output;
    const Tensor inf = Tensor::full(grad_output.shape(), std::numeric_limits<double>::infinity(), DType::kF32);
    return ops::mul(grad_output, inf);
  }
  std::string describe() const override { return "OverflowAt(" + std::to_string(at_) + ")"; }

 private:
  int at_;
  int calls_ = 0;
};

// fp16: an overflow in one micro-batch skips its whole step, and the scale moves once a step.
TEST(Accumulate, AnFp16OverflowInOneMicroBatchSkipsTheWholeStep) {
  const data::TensorDataset data = blobs(256, 8);  // 8 micro-batches of 32: 4 steps an epoch
  manual_seed(8);
  Sequential net{Linear(8, 16), ReLU()};
  net.add(std::make_unique<OverflowAt>(3));  // the first micro-batch of step 2
  net.add(std::make_unique<Linear>(16, 3));
  Adam opt(net.parameters(), {.lr = 0.01});
  CrossEntropyLoss loss;
  TrainerOptions o = options(32, 2);
  o.precision = Precision::kF16;
  o.loss_scaling.growth_interval = 2;
  o.schedule = nullptr;
  std::vector<std::vector<float>> weights;
  Parameter* w = net.parameters()[0];
  o.after_step = [&] { weights.push_back(w->value.to_vector<float>()); };
  Trainer t(net, opt, loss, o);
  const float initial = t.loss_scaler()->scale();
  t.fit(data);
  ASSERT_EQ(weights.size(), 8u);
  EXPECT_EQ(weights[1], weights[0]) << "step 2 overflowed in its first micro-batch and must change nothing";
  EXPECT_NE(weights[2], weights[1]);
  EXPECT_EQ(opt.steps(), 7);
  const LossScaler& s = *t.loss_scaler();
  EXPECT_EQ(s.skipped_steps(), 1);
  // Step 1 clean, step 2 backs off (x0.5), steps 3-8 clean: three growths (x2 each).
  EXPECT_EQ(s.scale(), initial * 0.5f * 8.0f);
  for (float l : t.step_losses()) EXPECT_TRUE(std::isfinite(l));
}

// A NaN loss is named by its step and its micro-batch.
TEST(Accumulate, ADivergenceNamesTheStepAndTheMicroBatch) {
  data::TensorDataset data = blobs(128, 9);
  data.inputs().data<float>()[70 * 8] = std::nanf("");  // micro-batch 5 of 16, unshuffled: step 3
  TrainerOptions o = options(16, 2);
  o.shuffle = false;
  o.schedule = nullptr;
  const std::string m = testing::error_of<DivergenceError>([&] { train(data, o, sgd); });
  EXPECT_NE(m.find("loss is NaN at step 3 (epoch 1, batch 5)"), std::string::npos) << m;
}

TEST(Accumulate, AValueBelowOneIsRefusedNamingIt) {
  Sequential net = make_net(1);
  SGD opt(net.parameters());
  CrossEntropyLoss loss;
  for (std::int64_t bad : {0, -3}) {
    TrainerOptions o;
    o.accumulate = bad;
    const std::string m = testing::error_of<ValueError>([&] { Trainer(net, opt, loss, o); });
    EXPECT_NE(m.find("accumulate"), std::string::npos) << m;
    EXPECT_NE(m.find("got " + std::to_string(bad)), std::string::npos) << m;
  }
}

TEST(Accumulate, BlocksCudaGraphsSayingWhy) {
  Sequential net = make_net(1);
  SGD opt(net.parameters());
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.accumulate = 2;
  o.cuda_graph = TrainerOptions::GraphMode::kOn;
  Trainer t(net, opt, loss, o);
  EXPECT_EQ(t.graph_blocker(), "gradient accumulation (accumulate 2) runs several backward passes per optimizer step");
  o.accumulate = 1;
  Trainer plain(net, opt, loss, o);
  EXPECT_EQ(plain.graph_blocker().find("accumulat"), std::string::npos);
}

}  // namespace
}  // namespace gpudl
