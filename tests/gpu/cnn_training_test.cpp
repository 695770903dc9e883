// A training step of the cnn_cifar10 resnet model on the GPU against the CPU.
#include <gtest/gtest.h>

#include "gpudl/layers/models/cifar.h"
#include "gpudl/gpudl.h"
#include "test_util.h"

namespace gpudl {
namespace {

using GpuCnnTraining = testing::GpuTest;

// Two SGD steps through 20 convolutions, batch norm and residual sums: cuDNN's FP32
// algorithms and OpenBLAS round differently (~1e-6 per layer); 1e-3 relative on the losses
// and weights leaves room for that growth and none for a wrong layer.
constexpr double kResnetStepTolerance = 1e-3;

TEST_F(GpuCnnTraining, ResnetStepsMatchTheCpu) {
  const Tensor x = Tensor::from_vector(testing::random_vector(4 * 3 * 32 * 32, 300, 0.0f, 1.0f), {4, 3, 32, 32});
  const Tensor y = Tensor::from_vector(std::vector<std::int64_t>{3, 1, 4, 1}, {4});
  std::vector<float> losses[2], weights[2];
  for (int d = 0; d < 2; ++d) {
    const Device device = d == 0 ? Device::cpu() : Device::cuda(0);
    manual_seed(9);
    Sequential net = models::resnet();
    net.to(device);
    SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9});
    CrossEntropyLoss loss;
    const Tensor xd = x.to(device), yd = y.to(device);
    for (int step = 0; step < 2; ++step) {
      opt.zero_grad();
      losses[d].push_back(loss.forward(net.forward(xd), yd).to_vector<float>()[0]);
      net.backward(loss.backward());
      opt.step();
    }
    for (float v : net.parameters()[0]->value.to_vector<float>()) weights[d].push_back(v);
  }
  EXPECT_LE(testing::relative_error(losses[1], losses[0]), kResnetStepTolerance);
  EXPECT_LE(testing::relative_error(weights[1], weights[0]), kResnetStepTolerance);
}

}  // namespace
}  // namespace gpudl
