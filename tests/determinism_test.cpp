// Determinism on the CPU: the same seed gives bit-identical losses and weights over two runs of
// an MLP with dropout, a CNN with batch norm and an LSTM (the CPU thread split is fixed, so
// every sum has one order).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "gpudl/core/runtime/ops.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/core/runtime/rng.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/recurrent.h"
#include "gpudl/layers/sequential.h"

namespace gpudl {
namespace {

struct Run {
  std::vector<float> losses;
  std::vector<float> weights;
};

// Trains `net` (built after manual_seed) for `steps` Adam steps on random inputs of `input`
// shape with `classes`-way labels of `label` shape, all drawn from one fixed generator.
Run train(const std::function<Sequential()>& make, const Shape& input, const Shape& label, std::int64_t classes,
          int steps) {
  manual_seed(1234);
  Sequential net = make();
  Adam opt(net.parameters(), AdamOptions{.lr = 1e-2});
  CrossEntropyLoss loss;
  Generator data(99);
  Run run;
  for (int s = 0; s < steps; ++s) {
    Tensor x = Tensor::empty(input);
    ops::uniform_(x, -1.0f, 1.0f, data);
    Tensor u = Tensor::empty(label);
    ops::uniform_(u, 0.0f, static_cast<float>(classes) - 0.001f, data);
    const Tensor y = u.cast(DType::kI64);
    opt.zero_grad();
    run.losses.push_back(loss.forward(net.forward(x), y).to_vector<float>()[0]);
    net.backward(loss.backward());
    opt.step();
  }
  for (Parameter* p : net.parameters()) {
    const auto v = p->value.to_vector<float>();
    run.weights.insert(run.weights.end(), v.begin(), v.end());
  }
  return run;
}

// Bitwise, so that -0 vs 0 or a last-bit difference fails.
void expect_bit_identical(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  ASSERT_FALSE(a.empty()) << what;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what << " differ between two runs";
}

void expect_deterministic(const std::function<Sequential()>& make, const Shape& input, const Shape& label,
                          std::int64_t classes) {
  const Run a = train(make, input, label, classes, 12);
  const Run b = train(make, input, label, classes, 12);
  expect_bit_identical(a.losses, b.losses, "losses");
  expect_bit_identical(a.weights, b.weights, "weights");
  // The runs did train: the loss moved, so identical results are not two untouched models.
  EXPECT_NE(a.losses.front(), a.losses.back());
}

TEST(Determinism, MlpWithDropoutRepeatsBitForBit) {
  expect_deterministic(
      [] { return Sequential{Linear(64, 128), ReLU(), Dropout(0.3f), Linear(128, 10)}; }, {256, 64}, {256}, 10);
}

TEST(Determinism, CnnWithBatchNormRepeatsBitForBit) {
  expect_deterministic(
      [] {
        return Sequential{Conv2d(3, 8, 3, {.padding = 1}), BatchNorm2d(8), ReLU(), MaxPool2d(2), Flatten(),
                          Linear(8 * 8 * 8, 10)};
      },
      {32, 3, 16, 16}, {32}, 10);
}

TEST(Determinism, LstmRepeatsBitForBit) {
  expect_deterministic([] { return Sequential{LSTM(8, 32, {.num_layers = 2, .dropout = 0.2f}), Linear(32, 5)}; },
                       {16, 8, 8}, {16, 8}, 5);
}

}  // namespace
}  // namespace gpudl
