// Whole training steps on the GPU against the CPU: a small MLP with dropout and Adam, both by
// hand and through the Trainer (pinned batches, copy stream, events).
#include <gtest/gtest.h>

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
    Trainer t(net, opt, loss, o);
    t.fit(train);
    losses[d] = t.step_losses();
  }
  ASSERT_EQ(losses[0].size(), 32u);
  EXPECT_LE(testing::relative_error(losses[1], losses[0]), kStepTolerance);
}

}  // namespace
}  // namespace gpudl
