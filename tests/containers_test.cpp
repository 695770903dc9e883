// BatchNorm2d, Residual and Concat on the CPU: values, shapes and names (their gradient checks
// are cases of the op table, tests/op_table_test.cpp).
#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/concat.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/recurrent.h"
#include "gpudl/layers/residual.h"
#include "gpudl/layers/sequential.h"
#include "gradcheck.h"

namespace gpudl {
namespace {

using testing::expect_gradients_match;

Tensor random_input(const Shape& shape, std::uint64_t salt) {
  return Tensor::from_vector(testing::random_vector(static_cast<std::size_t>(shape.numel()), salt, -2.0f, 2.0f),
                             shape);
}

TEST(Containers, BatchNorm2dNormalisesEachChannelOverBatchAndPixels) {
  BatchNorm2d bn(2);
  // Channel 0 holds 0..3 in each of two images, channel 1 a constant 5.
  std::vector<float> v{0, 1, 2, 3, 5, 5, 5, 5, 0, 1, 2, 3, 5, 5, 5, 5};
  const auto y = bn.forward(Tensor::from_vector(v, {2, 2, 2, 2})).to_vector<float>();
  // Mean 1.5, variance 1.25 for channel 0; channel 1 has variance 0 and maps to 0 (beta).
  EXPECT_NEAR(y[0], -1.5f / std::sqrt(1.25f + 1e-5f), 1e-5f);
  EXPECT_NEAR(y[3], 1.5f / std::sqrt(1.25f + 1e-5f), 1e-5f);
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_THROW(bn.forward(Tensor::zeros({2, 2})), ShapeError);
  EXPECT_EQ(bn.describe(), "BatchNorm2d(2)");
  EXPECT_EQ(bn.output_shape({2, 5, 5}), (Shape{2, 5, 5}));
}

TEST(Containers, ResidualAddsTheShortcutAndChecksShapes) {
  Linear f(2, 2, {.bias = false});
  f.weight().value.copy_from(Tensor::from_vector(std::vector<float>{1, 0, 0, 2}, {2, 2}));
  Residual r(std::move(f));
  const Tensor x = Tensor::from_vector(std::vector<float>{1, 3}, {1, 2});
  EXPECT_EQ(r.forward(x).to_vector<float>(), (std::vector<float>{2, 9}));  // (1, 6) + (1, 3)
  Residual bad(Linear(2, 3));
  try {
    bad.forward(x);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "Residual: main branch gives [1, 3] but the shortcut gives [1, 2]");
  }
  EXPECT_THROW(bad.output_shape({2}), ShapeError);
}

// Their sums need every branch's input gradient: a branch switched off before it joined is
// switched back on, and the container itself, switched off as a model's first module, still
// lets its branches compute theirs and returns dL/dx.
TEST(Containers, BranchesKeepTheirInputGradient) {
  Linear main_branch(3, 3), shortcut(3, 3), left(3, 2), right(3, 1);
  for (Module* m : std::initializer_list<Module*>{&main_branch, &shortcut, &left, &right}) m->set_input_grad(false);
  Residual r(std::move(main_branch), std::move(shortcut));
  Concat c(std::move(left), std::move(right));
  Sequential net;
  net.add(std::move(r)).add(std::move(c));
  net.set_input_grad(false);
  const Tensor x = random_input({2, 3}, 40);
  net.forward(x);
  EXPECT_FALSE(net.backward(random_input({2, 3}, 41)).defined());  // the container's own cut
  auto& residual = dynamic_cast<Residual&>(net[0]);
  residual.set_input_grad(true);
  residual.forward(x);
  EXPECT_EQ(residual.backward(random_input({2, 3}, 42)).shape(), x.shape());
  auto& concat = dynamic_cast<Concat&>(net[1]);
  concat.forward(x);
  EXPECT_EQ(concat.backward(random_input({2, 3}, 43)).shape(), x.shape());
}

TEST(Containers, NestedNamesAreUniqueAndStable) {
  Sequential net{Linear(2, 3), Sequential{Linear(3, 3), Linear(3, 3)},
                 Residual(Sequential{Linear(3, 3)}, Linear(3, 3)), Concat(Linear(3, 1), Linear(3, 2))};
  std::vector<std::string> names;
  for (Parameter* p : net.parameters()) names.push_back(p->name);
  const std::vector<std::string> expected{"0.weight",           "0.bias",        "1.0.weight",     "1.0.bias",
                                          "1.1.weight",         "1.1.bias",      "2.main.0.weight", "2.main.0.bias",
                                          "2.shortcut.weight",  "2.shortcut.bias", "3.0.weight",   "3.0.bias",
                                          "3.1.weight",         "3.1.bias"};
  EXPECT_EQ(names, expected);
  net.parameters();  // asking again must not rename
  EXPECT_EQ(net.parameters()[2]->name, "1.0.weight");
  EXPECT_EQ(net.output_shape({2}), Shape{3});
}

// A layer keeps answering to its own parameter names inside containers, which prefix them
// only when asked (named_parameters, state); checkpoint names stay what they were.
// A container written without named_parameters(): it renames its children's parameters, so the
// default named_parameters() gives both children's own "weight" and "bias".
class RenamingPair : public Module {
 public:
  RenamingPair() {
    for (Parameter* p : first_.parameters()) p->name = "0." + p->name;
    for (Parameter* p : second_.parameters()) p->name = "1." + p->name;
  }
  Tensor forward(const Tensor& x) override { return second_.forward(first_.forward(x)); }
  Tensor backward(const Tensor& dy) override { return first_.backward(second_.backward(dy)); }
  std::string describe() const override { return "RenamingPair"; }
  std::vector<Parameter*> parameters() override {
    std::vector<Parameter*> out = first_.parameters();
    for (Parameter* p : second_.parameters()) out.push_back(p);
    return out;
  }

 private:
  Linear first_{2, 2}, second_{2, 2};
};

TEST(Containers, RepeatedStateNamesAreRefusedNotSavedTwice) {
  RenamingPair pair;
  try {
    pair.state();
    FAIL() << "state() gave two entries of one name";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'weight'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("named_parameters()"), std::string::npos) << e.what();
  }
  Linear single(2, 2);
  EXPECT_THROW(pair.load_state(single.state()), ValueError);
}

TEST(Containers, ParametersKeepTheirOwnNamesAndContainersPrefixOnRequest) {
  Sequential seq{Embedding(5, 4), LSTM(4, 3), Linear(3, 5)};
  Module& lstm = seq[1];
  Parameter* w = lstm.parameter("weight_hh_l0");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->value.shape(), (Shape{12, 3}));
  EXPECT_EQ(seq.parameter("1.weight_hh_l0"), w);
  EXPECT_EQ(w->name, "1.weight_hh_l0");  // what optimizers key their state by, unchanged
  // Through the LSTM's own type too (Recurrent::parameter returns a reference).
  EXPECT_EQ(&dynamic_cast<Recurrent&>(lstm).parameter("weight_hh_l0"), w);
  std::vector<std::string> own;
  for (auto& [name, p] : lstm.named_parameters()) own.push_back(name);
  EXPECT_EQ(own, (std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}));

  std::string m;
  try {
    seq.parameter("weight_hh_l0");
  } catch (const ValueError& e) {
    m = e.what();
  }
  EXPECT_NE(m.find("'weight_hh_l0'"), std::string::npos) << m;
  EXPECT_NE(m.find("1.weight_hh_l0"), std::string::npos) << m;  // the names it does have
  EXPECT_NE(m.find("in all"), std::string::npos) << m;          // 8 names: a few shown

  // Nested containers: every level answers relative to itself, the outermost with the names
  // checkpoints have always used (those the containers gave the parameters on adoption).
  Sequential net{Linear(2, 3), Sequential{Linear(3, 3), BatchNorm1d(3)},
                 Residual(Sequential{Linear(3, 3)}, Linear(3, 3)), Concat(Linear(3, 1), Linear(3, 2))};
  const auto named = net.named_parameters();
  const auto params = net.parameters();
  ASSERT_EQ(named.size(), params.size());
  for (std::size_t i = 0; i < named.size(); ++i) {
    EXPECT_EQ(named[i].first, params[i]->name);
    EXPECT_EQ(named[i].second, params[i]);
  }
  EXPECT_EQ(net.parameter("2.main.0.weight"), net[2].parameter("main.0.weight"));
  EXPECT_EQ(net.parameter("3.1.bias"), net[3].parameter("1.bias"));
  std::vector<std::string> inner;
  for (auto& [name, t] : net[1].state()) inner.push_back(name);
  EXPECT_EQ(inner, (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                             "1.running_var", "1.num_batches_tracked"}));
  std::vector<std::string> outer;
  for (auto& [name, t] : net.state()) outer.push_back(name);
  EXPECT_EQ(outer[2], "1.0.weight");
  EXPECT_EQ(outer.back(), "1.1.num_batches_tracked");
  // A state saved from the whole model loads into a fresh one by the same names.
  Sequential copy{Linear(2, 3), Sequential{Linear(3, 3), BatchNorm1d(3)},
                  Residual(Sequential{Linear(3, 3)}, Linear(3, 3)), Concat(Linear(3, 1), Linear(3, 2))};
  copy.load_state(net.state());
  EXPECT_EQ(copy.parameter("2.shortcut.weight")->value.to_vector<float>(),
            net.parameter("2.shortcut.weight")->value.to_vector<float>());
}

TEST(Containers, ConcatJoinsAlongChannels) {
  Linear a(2, 1, {.bias = false}), b(2, 2, {.bias = false});
  a.weight().value.copy_from(Tensor::from_vector(std::vector<float>{1, 1}, {1, 2}));
  b.weight().value.copy_from(Tensor::from_vector(std::vector<float>{1, 0, 0, 1}, {2, 2}));
  Concat c(std::move(a), std::move(b));
  const Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(c.forward(x).to_vector<float>(), (std::vector<float>{3, 1, 2, 7, 3, 4}));
  EXPECT_EQ(c.output_shape({2}), Shape{3});
}

TEST(ReceptiveField, RecurrenceOfSizeJumpAndStart) {
  ReceptiveField rf;
  rf.apply(3, 1, 1);  // 3×3 conv, "same": size 3, start unchanged
  EXPECT_EQ(rf.size, 3.0);
  EXPECT_EQ(rf.start, 0.5);
  rf.apply(2, 2, 0);  // 2×2 pool, stride 2
  EXPECT_EQ(rf.size, 4.0);
  EXPECT_EQ(rf.jump, 2.0);
  EXPECT_EQ(rf.start, 1.0);
}

}  // namespace
}  // namespace gpudl
