// Deterministic mode on the GPU: with set_deterministic(true), two runs from the same seeds give
// bit-identical losses and weights (cross-entropy sums, gradient-norm clipping, batch norm,
// cuDNN convolutions, the embedding scatter and the LSTM all in play).
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <vector>

#include "gpudl/gpudl.h"
#include "test_util.h"

namespace gpudl {
namespace {

using GpuDeterminism = testing::GpuTest;

struct Run {
  std::vector<float> losses, weights;
};

// `steps` Adam steps with gradient clipping on CUDA:0, inputs from `make_input` (on the CPU,
// copied over) and integer labels in [0, classes) of shape `label`.
Run train(const std::function<Sequential()>& make, const std::function<Tensor(Generator&)>& make_input,
          const Shape& label, std::int64_t classes, int steps) {
  const Device d = Device::cuda(0);
  manual_seed(77);
  Sequential net = make();
  net.to(d);
  Adam opt(net.parameters(), AdamOptions{.lr = 1e-2});
  CrossEntropyLoss loss;
  Generator data(5);
  Run run;
  for (int s = 0; s < steps; ++s) {
    const Tensor x = make_input(data).to(d);
    Tensor u = Tensor::empty(label);
    ops::uniform_(u, 0.0f, static_cast<float>(classes) - 0.001f, data);
    const Tensor y = u.cast(DType::kI64).to(d);
    opt.zero_grad();
    run.losses.push_back(loss.forward(net.forward(x), y).to_vector<float>()[0]);
    net.backward(loss.backward());
    clip_grad_norm(net.parameters(), 1.0f);
    opt.step();
  }
  for (Parameter* p : net.parameters()) {
    const auto v = p->value.to_vector<float>();
    run.weights.insert(run.weights.end(), v.begin(), v.end());
  }
  return run;
}

void expect_repeatable(const std::function<Sequential()>& make, const std::function<Tensor(Generator&)>& make_input,
                       const Shape& label, std::int64_t classes) {
  const bool previous = deterministic();
  set_deterministic(true);
  const Run a = train(make, make_input, label, classes, 10);
  const Run b = train(make, make_input, label, classes, 10);
  set_deterministic(previous);
  ASSERT_EQ(a.losses.size(), b.losses.size());
  ASSERT_EQ(a.weights.size(), b.weights.size());
  EXPECT_EQ(std::memcmp(a.losses.data(), b.losses.data(), a.losses.size() * sizeof(float)), 0) << "losses differ";
  EXPECT_EQ(std::memcmp(a.weights.data(), b.weights.data(), a.weights.size() * sizeof(float)), 0)
      << "weights differ";
  EXPECT_NE(a.losses.front(), a.losses.back()) << "the model did not train";
}

Tensor uniform(const Shape& shape, Generator& g) {
  Tensor t = Tensor::empty(shape);
  ops::uniform_(t, -1.0f, 1.0f, g);
  return t;
}

TEST_F(GpuDeterminism, MlpWithDropoutRepeatsBitForBit) {
  expect_repeatable([] { return Sequential{Linear(64, 256), ReLU(), Dropout(0.3f), Linear(256, 10)}; },
                    [](Generator& g) { return uniform({512, 64}, g); }, {512}, 10);
}

TEST_F(GpuDeterminism, CnnWithBatchNormRepeatsBitForBit) {
  expect_repeatable(
      [] {
        return Sequential{Conv2d(3, 16, 3, {.padding = 1}), BatchNorm2d(16), ReLU(), MaxPool2d(2), Flatten(),
                          Linear(16 * 16 * 16, 10)};
      },
      [](Generator& g) { return uniform({64, 3, 32, 32}, g); }, {64}, 10);
}

TEST_F(GpuDeterminism, EmbeddingAndLstmRepeatBitForBit) {
  expect_repeatable([] { return Sequential{Embedding(40, 16), LSTM(16, 64, {.num_layers = 2}), Linear(64, 40)}; },
                    [](Generator& g) {
                      Tensor u = uniform({32, 16}, g);  // (time, batch) ids, many repeated
                      std::vector<std::int32_t> ids;
                      for (float v : u.to_vector<float>()) ids.push_back(static_cast<std::int32_t>((v + 1.0f) * 19.99f));
                      return Tensor::from_vector(ids, {32, 16});
                    },
                    {32, 16}, 40);
}

}  // namespace
}  // namespace gpudl
