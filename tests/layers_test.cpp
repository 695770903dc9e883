// Layers and losses on the CPU: forward values, shapes, errors, the losses' gradient checks and a
// container's (each layer's own gradient check is a case of the op table, tests/op_table_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"
#include "gradcheck.h"

namespace gpudl {
namespace {

using testing::expect_gradients_match;
using testing::expect_loss_gradient_matches;
using testing::random_vector;

Tensor random_input(const Shape& shape, std::uint64_t salt, float low = -2.0f, float high = 2.0f) {
  return Tensor::from_vector(random_vector(static_cast<std::size_t>(shape.numel()), salt, low, high), shape);
}

Tensor labels(const std::vector<std::int64_t>& v) {
  return Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())});
}

// Kinks of ReLU-like layers sit at 0; keep inputs two steps away so differences stay smooth.
constexpr float kKinkMargin = 2 * testing::kGradStep;

// Reference values: GELU(x) = x Φ(x), Φ(1) = 0.8413447, Φ(-2) = 0.0227501; the tanh form at 1 and
// -2 (PyTorch approximate="tanh" gives the same); SiLU(x) = x / (1 + e^-x).
TEST(Layers, GeluAndSiluMatchReferenceValues) {
  const Tensor x = Tensor::from_vector(std::vector<float>{1.0f, -2.0f, 0.0f}, {3});
  GELU gelu;
  GELU gelu_tanh(true);
  SiLU silu;
  const auto g = gelu.forward(x).to_vector<float>();
  const auto t = gelu_tanh.forward(x).to_vector<float>();
  const auto s = silu.forward(x).to_vector<float>();
  EXPECT_NEAR(g[0], 0.8413447f, 1e-6f);
  EXPECT_NEAR(g[1], -2.0f * 0.0227501f, 1e-6f);
  EXPECT_EQ(g[2], 0.0f);
  EXPECT_NEAR(t[0], 0.8411920f, 1e-6f);
  EXPECT_NEAR(t[1], -0.0454023f, 1e-6f);
  EXPECT_NEAR(s[0], 0.7310586f, 1e-6f);
  EXPECT_NEAR(s[1], -2.0f / (1.0f + std::exp(2.0f)), 1e-6f);
  EXPECT_EQ(gelu.describe(), "GELU");
  EXPECT_EQ(gelu_tanh.describe(), "GELU(tanh)");
  EXPECT_EQ(silu.describe(), "SiLU");
}

TEST(GradCheck, FlattenAndSequential) {
  Flatten flatten;
  expect_gradients_match(flatten, random_input({2, 3, 2}, 25), 26);
  Sequential net{Flatten(), Linear(6, 5), Tanh(), BatchNorm1d(5), Linear(5, 4), Sigmoid(), Linear(4, 3)};
  expect_gradients_match(net, random_input({4, 2, 3}, 27), 28);
}

TEST(GradCheck, Losses) {
  MSELoss mse;
  expect_loss_gradient_matches(mse, random_input({3, 4}, 29), random_input({3, 4}, 30));
  BCEWithLogitsLoss bce;
  expect_loss_gradient_matches(bce, random_input({3, 4}, 31), random_input({3, 4}, 32, 0.0f, 1.0f));
  CrossEntropyLoss ce;
  expect_loss_gradient_matches(ce, random_input({4, 5}, 33), labels({0, 4, 2, 2}));
  CrossEntropyLoss smoothed({.label_smoothing = 0.2f});
  expect_loss_gradient_matches(smoothed, random_input({4, 5}, 34), labels({1, 3, 0, 4}));
  // The margin criteria are piecewise linear: keep t·x away from the margins.
  MarginLoss hinge(1.0f);
  expect_loss_gradient_matches(hinge, Tensor::from_vector(std::vector<float>{0.3f, -2.0f, 1.7f, -0.4f}, {4}),
                               Tensor::from_vector(std::vector<float>{1, 1, -1, -1}, {4}));
  MarginLoss perceptron(0.0f);
  expect_loss_gradient_matches(perceptron, Tensor::from_vector(std::vector<float>{0.3f, -2.0f, 1.7f, -0.4f}, {4}),
                               Tensor::from_vector(std::vector<float>{1, 1, -1, -1}, {4}));
}

TEST(Layers, LinearComputesXWtPlusB) {
  Linear layer(2, 2);
  layer.weight().value.copy_from(Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}));
  layer.bias().value.copy_from(Tensor::from_vector(std::vector<float>{10, 20}, {2}));
  const Tensor y = layer.forward(Tensor::from_vector(std::vector<float>{1, 1, 2, 0}, {2, 2}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{13, 27, 12, 26}));
  try {
    layer.forward(Tensor::zeros({2, 3}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "Linear(2, 2): expected input (N, 2) or (..., 2), got [2, 3]");
  }
  EXPECT_THROW(Linear(0, 3), ValueError);
}

TEST(Layers, GradientsAccumulateUntilZeroed) {
  Linear layer(3, 2);
  const Tensor x = random_input({4, 3}, 40);
  const Tensor g = random_input({4, 2}, 41);
  layer.zero_grad();
  layer.forward(x);
  layer.backward(g);
  const auto once = layer.weight().grad.to_vector<float>();
  layer.forward(x);
  layer.backward(g);
  const auto twice = layer.weight().grad.to_vector<float>();
  for (std::size_t i = 0; i < once.size(); ++i) EXPECT_FLOAT_EQ(twice[i], 2 * once[i]);
  layer.zero_grad();
  for (float v : layer.weight().grad.to_vector<float>()) EXPECT_EQ(v, 0.0f);
  EXPECT_THROW(layer.backward(g), Error);  // the forward's input was consumed
}

TEST(Layers, DropoutScalesKeptUnitsAndIsIdentityInEval) {
  Dropout dropout(0.25f, 99);
  const Tensor x = Tensor::full({1000}, 1.0);
  const auto y = dropout.forward(x).to_vector<float>();
  int kept = 0;
  for (float v : y) {
    EXPECT_TRUE(v == 0.0f || std::abs(v - 1.0f / 0.75f) < 1e-6f) << v;
    kept += v != 0.0f;
  }
  EXPECT_NEAR(kept, 750, 60);  // binomial(1000, 0.75): sd 13.7, about 4.4 sd
  dropout.eval();
  EXPECT_EQ(dropout.forward(x).raw(), x.raw());
  EXPECT_THROW(Dropout(1.0f), ValueError);
}

TEST(Layers, BatchNormUsesBatchStatisticsThenRunningAverages) {
  BatchNorm1d bn(2, {.momentum = 0.5f});
  const Tensor x = Tensor::from_vector(std::vector<float>{1, 10, 3, 30}, {2, 2});
  const auto y = bn.forward(x).to_vector<float>();
  // Feature 0: mean 2, var 1 -> (-1, 1) / sqrt(1 + 1e-5); feature 1: mean 20, var 100.
  EXPECT_NEAR(y[0], -1.0f, 1e-4f);
  EXPECT_NEAR(y[2], 1.0f, 1e-4f);
  EXPECT_NEAR(y[1], -1.0f, 1e-4f);
  const auto state = bn.state();
  ASSERT_EQ(state.size(), 5u);
  EXPECT_EQ(state[2].first, "running_mean");
  // running = 0.5 * init + 0.5 * batch (unbiased variance: 2 and 200).
  EXPECT_EQ(state[2].second.to_vector<float>(), (std::vector<float>{1.0f, 10.0f}));
  EXPECT_EQ(state[3].second.to_vector<float>(), (std::vector<float>{1.5f, 100.5f}));
  // PyTorch's count of train-mode batches; eval mode leaves it alone.
  EXPECT_EQ(state[4].first, "num_batches_tracked");
  EXPECT_EQ(state[4].second.shape(), Shape{});
  EXPECT_EQ(state[4].second.to_vector<std::int64_t>(), (std::vector<std::int64_t>{1}));
  bn.eval();
  const auto e = bn.forward(x).to_vector<float>();
  EXPECT_EQ(bn.state()[4].second.to_vector<std::int64_t>(), (std::vector<std::int64_t>{1}));
  // Files written before the count existed still load.
  BatchNorm1d old(2);
  std::vector<NamedTensor> without(state.begin(), state.begin() + 4);
  EXPECT_NO_THROW(old.load_state(without));
  EXPECT_EQ(old.state()[3].second.to_vector<float>(), (std::vector<float>{1.5f, 100.5f}));
  EXPECT_NEAR(e[0], 0.0f / std::sqrt(1.5f), 1e-4f);
  EXPECT_THROW(bn.backward(x), Error);  // eval mode keeps nothing for backward
  bn.train();
  EXPECT_THROW(bn.forward(Tensor::zeros({1, 2})), ShapeError);  // one value per channel
}

TEST(Layers, SoftmaxRowsSumToOne) {
  Softmax softmax;
  const auto y = softmax.forward(Tensor::from_vector(std::vector<float>{1000, 1001, -5, 0, 0, 0}, {2, 3}))
                     .to_vector<float>();
  EXPECT_NEAR(y[0] + y[1] + y[2], 1.0f, 1e-6f);
  EXPECT_NEAR(y[1], 1.0f / (1.0f + std::exp(-1.0f)), 1e-6f);  // no overflow at 1000
  EXPECT_NEAR(y[3], 1.0f / 3.0f, 1e-6f);
}

TEST(Losses, CrossEntropyValuesAndAccuracy) {
  CrossEntropyLoss ce;
  // Row 0: logits (0, 0) label 1 -> log 2; row 1: (2, 0) label 0 -> log(1 + e^-2).
  const Tensor logits = Tensor::from_vector(std::vector<float>{0, 0, 2, 0}, {2, 2});
  const float loss = ce.forward(logits, labels({1, 0})).to_vector<float>()[0];
  EXPECT_NEAR(loss, (std::log(2.0f) + std::log1p(std::exp(-2.0f))) / 2, 1e-6f);
  EXPECT_EQ(ce.correct().to_vector<float>()[0], 1.0f);  // row 0 ties and picks class 0
  const float bad = ce.forward(logits, labels({1, 7})).to_vector<float>()[0];
  EXPECT_TRUE(std::isnan(bad));  // an impossible label stops training rather than hiding
  try {
    ce.forward(logits, labels({1}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "CrossEntropyLoss: expected logits (N, C) and labels (N), or (..., C) and (...), got [2, 2] and [1]");
  }
  EXPECT_THROW(ce.forward(logits, Tensor::zeros({2})), ValueError);  // f32 labels
  EXPECT_THROW(CrossEntropyLoss({.label_smoothing = 1.0f}), ValueError);
}

TEST(Losses, ElementwiseValues) {
  MSELoss mse;
  const Tensor a = Tensor::from_vector(std::vector<float>{1, 2}, {2});
  EXPECT_FLOAT_EQ(mse.forward(a, Tensor::from_vector(std::vector<float>{0, 4}, {2})).to_vector<float>()[0], 2.5f);
  EXPECT_EQ(mse.backward().to_vector<float>(), (std::vector<float>{1.0f, -2.0f}));
  MarginLoss perceptron(0.0f);
  const Tensor scores = Tensor::from_vector(std::vector<float>{0.5f, -1.0f}, {2});
  const Tensor t = Tensor::from_vector(std::vector<float>{1, 1}, {2});
  EXPECT_FLOAT_EQ(perceptron.forward(scores, t).to_vector<float>()[0], 0.5f);  // only the mistake costs
  EXPECT_EQ(perceptron.correct().to_vector<float>()[0], 1.0f);
  BCEWithLogitsLoss bce;
  const float big = bce.forward(Tensor::from_vector(std::vector<float>{100.0f}, {1}),
                                Tensor::from_vector(std::vector<float>{0.0f}, {1}))
                        .to_vector<float>()[0];
  EXPECT_NEAR(big, 100.0f, 1e-4f);  // stable where exp(100) overflows
  EXPECT_THROW(mse.forward(a, Tensor::zeros({3})), ShapeError);
}

TEST(Sequential, SummaryListsShapesParametersAndFlops) {
  Sequential net{Flatten(), Linear(784, 512), ReLU(), Dropout(0.2f, 1), Linear(512, 10)};
  const std::string s = net.summary({1, 28, 28});
  EXPECT_NE(s.find("Linear(784, 512)"), std::string::npos) << s;
  EXPECT_NE(s.find("407050 parameters"), std::string::npos) << s;  // 784*512+512 + 512*10+10
  EXPECT_EQ(net.output_shape({1, 28, 28}), Shape{10});
  EXPECT_THROW(net.summary({3, 28, 28}), ShapeError);
  const auto params = net.parameters();
  ASSERT_EQ(params.size(), 4u);
  EXPECT_EQ(params[0]->name, "1.weight");
  EXPECT_EQ(params[3]->name, "4.bias");
  EXPECT_EQ(net.generators().size(), 1u);
}

TEST(Sequential, StateRoundTripsThroughLoadState) {
  manual_seed(5);
  Sequential a{Linear(3, 4), BatchNorm1d(4), Linear(4, 2)};
  manual_seed(6);
  Sequential b{Linear(3, 4), BatchNorm1d(4), Linear(4, 2)};
  a.forward(random_input({5, 3}, 50));  // moves a's running statistics
  b.load_state(a.state());
  a.eval();
  b.eval();
  const Tensor x = random_input({2, 3}, 51);
  EXPECT_EQ(a.forward(x).to_vector<float>(), b.forward(x).to_vector<float>());
  Sequential c{Linear(3, 5)};
  EXPECT_THROW(c.load_state(a.state()), ShapeError);
  Sequential d{Linear(3, 4)};
  EXPECT_THROW(b.load_state(d.state()), ValueError);  // no "1.weight" saved
}

// A state whose last entry does not fit changes nothing: the first layer's weights, which fit,
// are not copied before the mismatch is found.
TEST(Sequential, LoadStateIsAllOrNothing) {
  manual_seed(7);
  Sequential a{Linear(3, 4), Linear(4, 2)};
  manual_seed(8);
  Sequential b{Linear(3, 4), Linear(4, 2)};
  std::vector<NamedTensor> state = a.state();
  ASSERT_EQ(state.back().first, "1.bias");
  state.back().second = Tensor::zeros({3});
  const std::vector<NamedTensor> before = b.state();
  std::vector<std::vector<float>> kept;
  for (const auto& [name, t] : before) kept.push_back(t.to_vector<float>());
  EXPECT_THROW(b.load_state(state), ShapeError);
  const std::vector<NamedTensor> after = b.state();
  for (std::size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i].second.to_vector<float>(), kept[i]) << after[i].first;
}

// With the input gradient off (as the Trainer runs a model), the leading modules up to the
// first with parameters skip dL/dx, backward returns nothing, and every parameter gradient
// is bit-identical to a full backward's.
TEST(Sequential, WithoutInputGradientKeepsEveryParameterGradient) {
  auto make = [] {
    manual_seed(17);
    return Sequential{Flatten(), Linear(12, 5), ReLU(), Dropout(0.3f, 4), Linear(5, 3)};
  };
  Sequential full = make(), lean = make();
  lean.set_input_grad(false);
  EXPECT_FALSE(lean.input_grad());
  EXPECT_FALSE(lean[0].input_grad());
  EXPECT_FALSE(lean[1].input_grad());
  EXPECT_TRUE(lean[2].input_grad());
  EXPECT_TRUE(lean[4].input_grad());
  const Tensor x = random_input({4, 3, 4}, 18), dy = random_input({4, 3}, 19);
  EXPECT_EQ(full.forward(x).to_vector<float>(), lean.forward(x).to_vector<float>());
  const Tensor dx = full.backward(dy);
  EXPECT_EQ(dx.shape(), x.shape());
  EXPECT_FALSE(lean.backward(dy).defined());
  const auto a = full.parameters(), b = lean.parameters();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]->grad.to_vector<float>(), b[i]->grad.to_vector<float>()) << a[i]->name;
  }
  // Back on: every child computes its input gradient again.
  lean.set_input_grad(true);
  for (std::size_t i = 0; i < lean.size(); ++i) EXPECT_TRUE(lean[i].input_grad()) << i;
  full.forward(x);  // both dropout generators move on to the same next mask
  lean.forward(x);
  EXPECT_EQ(lean.backward(dy).to_vector<float>(), full.backward(dy).to_vector<float>());
  // Children added later follow the same rule.
  Sequential later;
  later.set_input_grad(false);
  later.add(ReLU()).add(Linear(3, 2)).add(Linear(2, 2));
  EXPECT_FALSE(later[0].input_grad());
  EXPECT_FALSE(later[1].input_grad());
  EXPECT_TRUE(later[2].input_grad());
  // A module switched off on its own and added after a layer with parameters still passes
  // the gradient on: the container's rule decides.
  Linear off(2, 2);
  off.set_input_grad(false);
  Sequential chain;
  chain.add(Linear(3, 2)).add(std::move(off));
  EXPECT_TRUE(chain[1].input_grad());
  chain.forward(random_input({2, 3}, 20));
  EXPECT_EQ(chain.backward(random_input({2, 2}, 21)).shape(), Shape({2, 3}));
  // Switched off directly on a middle child, it would cut the first layer's gradient off:
  // backward says so instead of losing it.
  chain[1].set_input_grad(false);
  chain.forward(random_input({2, 3}, 22));
  try {
    chain.backward(random_input({2, 2}, 23));
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("module 1 (Linear(2, 2))"), std::string::npos) << e.what();
  }
  // A nested container that gains parameters after it joined is seen at the next forward.
  Sequential outer;
  outer.add(Sequential{}).add(Linear(3, 2));
  outer.set_input_grad(false);
  auto& inner = dynamic_cast<Sequential&>(outer[0]);
  inner.add(Linear(3, 3));
  outer.forward(random_input({2, 3}, 24));
  EXPECT_TRUE(outer[1].input_grad());
  EXPECT_FALSE(outer.backward(random_input({2, 2}, 25)).defined());
  for (Parameter* p : outer.parameters()) {
    const auto grad = p->grad.to_vector<float>();
    EXPECT_TRUE(std::any_of(grad.begin(), grad.end(), [](float v) { return v != 0.0f; })) << p->name;
  }
}

}  // namespace
}  // namespace gpudl
