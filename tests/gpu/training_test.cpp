// Whole training steps on the GPU against the CPU: a small MLP with dropout and Adam, both by
// hand and through the Trainer (pinned batches, copy stream, events).
#include <gtest/gtest.h>

#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/gpudl.h"
#include "test_util.h"

namespace gpudl {
namespace {

using GpuTraining = testing::GpuTest;

// cuBLAS and OpenBLAS sum the GEMMs in different orders and nvcc fuses multiply-adds, so a
// few Adam steps drift apart by a few float ulps per step: 1e-4 relative is far from the
// O(1) differences a wrong kernel gives.
constexpr double kStepTolerance = 1e-4;

struct StepsRun {
  std::vector<float> losses;
  std::vector<float> weights;
};

StepsRun train_steps(Device device, const Tensor& x, const Tensor& y, int steps) {
  manual_seed(3);
  Sequential net{Flatten(), Linear(64, 32), ReLU(), Dropout(0.2f, 77), Linear(32, 10)};
  net.to(device);
  Adam opt(net.parameters(), {.lr = 1e-2});
  CrossEntropyLoss loss;
  StepsRun run;
  const Tensor xd = x.to(device), yd = y.to(device);
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    run.losses.push_back(loss.forward(net.forward(xd), yd).to_vector<float>()[0]);
    net.backward(loss.backward());
    opt.step();
  }
  for (Parameter* p : net.parameters()) {
    for (float v : p->value.to_vector<float>()) run.weights.push_back(v);
  }
  return run;
}

TEST_F(GpuTraining, MlpStepsMatchTheCpu) {
  const Tensor x = Tensor::from_vector(testing::random_vector(48 * 64, 90), {48, 1, 8, 8});
  std::vector<std::int64_t> labels(48);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>((i * 7) % 10);
  const Tensor y = Tensor::from_vector(labels, {48});
  const StepsRun cpu = train_steps(Device::cpu(), x, y, 6);
  const StepsRun gpu = train_steps(Device::cuda(0), x, y, 6);
  EXPECT_LE(testing::relative_error(gpu.losses, cpu.losses), kStepTolerance);
  EXPECT_LE(testing::relative_error(gpu.weights, cpu.weights), kStepTolerance);
  EXPECT_LT(cpu.losses.back(), cpu.losses.front());
}

TEST_F(GpuTraining, TrainerOnTheGpuFollowsTheCpuStepForStep) {
  const std::int64_t n = 500;
  std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = i % 10;
  const data::TensorDataset train(Tensor::from_vector(testing::random_vector(static_cast<std::size_t>(n * 64), 91),
                                                      {n, 64}),
                                  Tensor::from_vector(labels, {n}));
  std::vector<float> losses[2];
  for (int d = 0; d < 2; ++d) {
    const Device device = d == 0 ? Device::cpu() : Device::cuda(0);
    manual_seed(4);
    Sequential net{Linear(64, 32), Tanh(), Dropout(0.1f, 78), Linear(32, 10)};
    net.to(device);
    SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9});
    CrossEntropyLoss loss;
    TrainerOptions o;
    o.batch = 32;  // 16 batches, the last one short: buffers are reallocated on the way
    o.epochs = 2;
    o.seed = 5;
    o.progress = false;
    o.record_step_losses = true;
    o.precision = Precision::kF32;  // the GPU's default would be bf16
    Trainer t(net, opt, loss, o);
    t.fit(train);
    losses[d] = t.step_losses();
  }
  ASSERT_EQ(losses[0].size(), 32u);
  EXPECT_LE(testing::relative_error(losses[1], losses[0]), kStepTolerance);
}

// The GPU's default precision is bf16 (compute capability 8.0 and newer), and a bf16 or fp16
// run through the Trainer follows the CPU's run in the same precision: the same stored values,
// FP32 sums in another order, each rounding landing on the same side nearly always. Losses of
// a few steps in the low type: a bf16 loss differs by a few u (2^-8), not O(1).
TEST_F(GpuTraining, LowPrecisionTrainerRunsFollowTheCpu) {
  const Device gpu = Device::cuda(0);
  if (cuda_api::compute_capability(0) >= 80) {
    EXPECT_EQ(default_precision(gpu), Precision::kBF16);
  }
  for (Precision p : {Precision::kBF16, Precision::kF16}) {
    const data::TensorDataset train = testing::blobs(256, 92), test = testing::blobs(96, 93);
    std::vector<float> losses[2];
    double accuracy[2] = {0, 0};
    float scale[2] = {0, 0};
    for (int d = 0; d < 2; ++d) {
      const Device device = d == 0 ? Device::cpu() : gpu;
      manual_seed(6);
      Sequential net{Linear(8, 32), ReLU(), Linear(32, 32), Tanh(), Linear(32, 3)};
      net.to(device);
      Adam opt(net.parameters(), {.lr = 0.01});
      CrossEntropyLoss loss;
      TrainerOptions o;
      o.batch = 32;
      o.epochs = 3;
      o.seed = 5;
      o.progress = false;
      o.record_step_losses = true;
      o.precision = p;
      Trainer t(net, opt, loss, o);
      accuracy[d] = t.fit(train, &test).final_test.accuracy;
      losses[d] = t.step_losses();
      if (t.loss_scaler() != nullptr) scale[d] = t.loss_scaler()->scale();
    }
    const double u = p == Precision::kBF16 ? 1.0 / 256 : 1.0 / 2048;
    ASSERT_EQ(losses[1].size(), losses[0].size());
    EXPECT_LE(testing::relative_error(losses[1], losses[0]), 8 * u) << precision_name(p);
    EXPECT_GT(accuracy[1], 0.8) << precision_name(p);
    EXPECT_EQ(scale[1], scale[0]) << "the loss scale follows the same overflow history";
  }
}

// n random 3x8x8 images with labels (i x mult) mod 10, for the captured-step tests.
data::TensorDataset graph_data(std::int64_t n, std::int64_t mult, std::uint64_t salt) {
  std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = (i * mult) % 10;
  return data::TensorDataset(
      Tensor::from_vector(testing::random_vector(static_cast<std::size_t>(n * 3 * 8 * 8), salt), {n, 3, 8, 8}),
      Tensor::from_vector(labels, {n}));
}

// A small CNN with a fused batch norm, initialised from `seed`, on `d`.
Sequential graph_net(std::uint64_t seed, Device d) {
  manual_seed(seed);
  Sequential net{Conv2d(3, 8, 3, {.padding = 1, .bias = false}), BatchNorm2d(8, {.relu = true}), MaxPool2d(2),
                 Flatten(), Linear(8 * 4 * 4, 10)};
  net.to(d);
  return net;
}

// A Trainer whose step is captured as a CUDA graph (after warm-up) against the same run
// eager: the same kernels in the same order, so the same weights and losses up to cuDNN's
// algorithm choice, which may differ between the two runs (deterministic mode pins it: bit
// for bit); and the replays take no memory from the upstream allocator.
TEST_F(GpuTraining, CapturedStepsEqualEagerSteps) {
  const Device d = Device::cuda(0);
  set_deterministic(true);
  // 12 full batches, then a short one run eagerly.
  const data::TensorDataset train = graph_data(64 * 12 + 40, 7, 95);
  struct Run {
    std::vector<float> weights;
    std::vector<float> losses;
    bool replayed;
    std::vector<std::uint64_t> upstream;  // upstream allocations at each epoch's start, and at the end
  };
  MemoryPool& pool = Context::get(d).memory_pool();
  const auto fit = [&](TrainerOptions::GraphMode mode, int epochs) {
    Run r;
    Sequential net = graph_net(8, d);
    SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9, .nesterov = true});
    CrossEntropyLoss loss;
    TrainerOptions o;
    o.batch = 64;
    o.epochs = epochs;
    o.progress = false;
    o.record_step_losses = true;
    o.cuda_graph = mode;
    o.on_epoch_start = [&] { r.upstream.push_back(pool.stats().upstream_allocations); };
    Trainer trainer(net, opt, loss, o);
    trainer.fit(train);
    r.losses = trainer.step_losses();
    r.replayed = trainer.graph_replaying();
    r.upstream.push_back(pool.stats().upstream_allocations);
    for (Parameter* p : net.parameters()) {
      for (float v : p->value.to_vector<float>()) r.weights.push_back(v);
    }
    EXPECT_EQ(opt.steps(), static_cast<std::int64_t>(r.losses.size()));
    return r;
  };
  const Run eager = fit(TrainerOptions::GraphMode::kOff, 2);
  const Run graphed = fit(TrainerOptions::GraphMode::kOn, 2);
  EXPECT_FALSE(eager.replayed);
  EXPECT_TRUE(graphed.replayed);
  EXPECT_EQ(graphed.weights, eager.weights);
  EXPECT_EQ(graphed.losses, eager.losses);
  // Once the first epoch has captured the step (and run its short batch eagerly), the epochs
  // after it reserve nothing more from the upstream allocator.
  const Run longer = fit(TrainerOptions::GraphMode::kOn, 4);
  ASSERT_EQ(longer.upstream.size(), 5u);
  for (std::size_t e = 1; e < longer.upstream.size(); ++e) {
    EXPECT_EQ(longer.upstream[e], longer.upstream[1]) << "epoch " << e + 1;
  }
  set_deterministic(false);
}

// Dropout in a captured step: its Philox offset lives on the device and is counted up by each
// replay, so replays draw fresh masks; the captured run (12 full batches a epoch and a short
// one run eagerly, 3 epochs) equals the eager one, and the host generator ends where the eager
// run's does, so a checkpoint taken after replays continues the same stream.
TEST_F(GpuTraining, CapturedStepsWithDropoutDrawFreshMasks) {
  const Device d = Device::cuda(0);
  set_deterministic(true);
  const data::TensorDataset train = graph_data(64 * 12 + 40, 4, 97);
  struct Run {
    std::vector<float> weights, losses;
    bool replayed;
    std::uint64_t offset;
  };
  const auto fit = [&](TrainerOptions::GraphMode mode) {
    Run r;
    manual_seed(10);
    Sequential net{Conv2d(3, 8, 3, {.padding = 1, .bias = false}), BatchNorm2d(8, {.relu = true}), MaxPool2d(2),
                   Flatten(), Dropout(0.3f, std::uint64_t{21}), Linear(8 * 4 * 4, 10)};
    net.to(d);
    SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9});
    CrossEntropyLoss loss;
    TrainerOptions o;
    o.batch = 64;
    o.epochs = 3;
    o.progress = false;
    o.record_step_losses = true;
    o.cuda_graph = mode;
    Trainer trainer(net, opt, loss, o);
    EXPECT_EQ(trainer.graph_blocker(), "");
    trainer.fit(train);
    r.losses = trainer.step_losses();
    r.replayed = trainer.graph_replaying();
    r.offset = net.generators().at(0)->offset();
    for (Parameter* p : net.parameters()) {
      for (float v : p->value.to_vector<float>()) r.weights.push_back(v);
    }
    return r;
  };
  const Run eager = fit(TrainerOptions::GraphMode::kOff);
  const Run graphed = fit(TrainerOptions::GraphMode::kOn);
  EXPECT_TRUE(graphed.replayed);
  EXPECT_EQ(graphed.offset, eager.offset);
  EXPECT_EQ(eager.offset, 3u * 13u);  // one mask per training step
  EXPECT_EQ(graphed.losses, eager.losses);
  EXPECT_EQ(graphed.weights, eager.weights);
  set_deterministic(false);
}

// The values a replay must not freeze: a cosine schedule's learning rate and Adam's bias
// corrections at every step, and a parameter group's factor changed by a graph-safe hook after
// step 7, which captures the step again. The captured run equals the eager one.
TEST_F(GpuTraining, CapturedStepsFollowSchedulesAdamAndGroupFactors) {
  const Device d = Device::cuda(0);
  set_deterministic(true);
  const data::TensorDataset train = graph_data(64 * 8, 3, 96);
  struct Run {
    std::vector<float> weights, losses;
    bool replayed;
    std::int64_t recaptures;
  };
  const auto fit = [&](TrainerOptions::GraphMode mode) {
    Run r;
    Sequential net = graph_net(9, d);
    Adam opt(net.parameters(), {.lr = 3e-3, .weight_decay = 1e-4});
    CrossEntropyLoss loss;
    TrainerOptions o;
    o.batch = 64;
    o.epochs = 3;
    o.progress = false;
    o.record_step_losses = true;
    o.cuda_graph = mode;
    o.schedule = std::make_shared<CosineLR>(3e-3, 24);
    Trainer* trainer_ptr = nullptr;
    o.after_step = [&] {
      if (trainer_ptr->global_step() + 1 == 7) opt.set_param_scale(1, 4.0, 0.25);  // the batch norm's scale
    };
    o.after_step_graph_safe = true;
    Trainer trainer(net, opt, loss, o);
    trainer_ptr = &trainer;
    trainer.fit(train);
    r.losses = trainer.step_losses();
    r.replayed = trainer.graph_replaying();
    r.recaptures = trainer.graph_recaptures();
    for (Parameter* p : net.parameters()) {
      for (float v : p->value.to_vector<float>()) r.weights.push_back(v);
    }
    return r;
  };
  const Run eager = fit(TrainerOptions::GraphMode::kOff);
  const Run graphed = fit(TrainerOptions::GraphMode::kOn);
  EXPECT_TRUE(graphed.replayed);
  EXPECT_EQ(graphed.recaptures, 1);
  EXPECT_EQ(graphed.losses, eager.losses);
  EXPECT_EQ(graphed.weights, eager.weights);
  set_deterministic(false);
}

}  // namespace
}  // namespace gpudl
