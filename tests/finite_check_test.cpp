// The optional finite-value check: the first module whose output holds NaN or Inf is named
// (nested paths, the input itself, the Trainer's step), and nothing is checked when it is off.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gpudl/core/runtime/ops.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"

namespace gpudl {
namespace {

// Turns the check on for one test and restores the previous setting after it.
class FiniteCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = check_finite();
    set_check_finite(true);
  }
  void TearDown() override { set_check_finite(previous_); }

 private:
  bool previous_ = false;
};

Parameter& parameter(Sequential& net, const std::string& name) {
  for (Parameter* p : net.parameters()) {
    if (p->name == name) return *p;
  }
  throw ValueError("no parameter " + name);
}

Tensor ones(std::int64_t rows, std::int64_t cols) { return Tensor::full({rows, cols}, 1.0); }

TEST(AllFinite, FindsNanAndInfButNotLargeFiniteValues) {
  const float big = std::numeric_limits<float>::max();
  // A plain sum of these would overflow to Inf; all_finite must not mistake that for one.
  EXPECT_TRUE(ops::all_finite(Tensor::from_vector(std::vector<float>(1000, big), {1000})));
  EXPECT_FALSE(ops::all_finite(Tensor::from_vector(std::vector<float>{1.0f, NAN, 2.0f}, {3})));
  EXPECT_FALSE(ops::all_finite(Tensor::from_vector(std::vector<float>{-INFINITY}, {1})));
  EXPECT_TRUE(ops::all_finite(Tensor::from_vector(std::vector<std::int64_t>{1, 2}, {2})));
  EXPECT_TRUE(ops::all_finite(Tensor::empty({0})));
}

TEST_F(FiniteCheck, NamesTheFirstModuleWithANonFiniteOutput) {
  Sequential net{Linear(4, 3), ReLU(), Linear(3, 2)};
  parameter(net, "2.weight").value.data<float>()[1] = INFINITY;
  try {
    net.forward(ones(5, 4));
    FAIL() << "expected NonFiniteError";
  } catch (const NonFiniteError& e) {
    EXPECT_EQ(e.module_path(), "2");
    EXPECT_EQ(std::string(e.what()), "output of module 2 (" + net[2].describe() + ") holds NaN or Inf");
  }
}

TEST_F(FiniteCheck, GivesThePathIntoNestedContainers) {
  Sequential net{Linear(4, 4), Sequential{ReLU(), Linear(4, 2)}};
  parameter(net, "1.1.bias").value.data<float>()[0] = NAN;
  try {
    net.forward(ones(2, 4));
    FAIL() << "expected NonFiniteError";
  } catch (const NonFiniteError& e) {
    EXPECT_EQ(e.module_path(), "1.1");
    EXPECT_NE(std::string(e.what()).find("Linear"), std::string::npos) << e.what();
  }
}

TEST_F(FiniteCheck, BlamesTheInputWhenItIsAlreadyNotFinite) {
  Sequential net{Linear(4, 2)};
  Tensor x = ones(2, 4);
  x.data<float>()[3] = NAN;
  try {
    net.forward(x);
    FAIL() << "expected NonFiniteError";
  } catch (const NonFiniteError& e) {
    EXPECT_EQ(e.module_path(), "input");
  }
}

TEST(FiniteCheckOff, LetsNonFiniteValuesThrough) {
  ASSERT_FALSE(check_finite()) << "the check must be off by default (GPUDL_CHECK_FINITE unset)";
  Sequential net{Linear(4, 2)};
  parameter(net, "0.weight").value.data<float>()[0] = NAN;
  const Tensor y = net.forward(ones(1, 4));
  EXPECT_FALSE(ops::all_finite(y));
}

TEST_F(FiniteCheck, TheTrainerAddsTheStep) {
  Sequential net{Linear(3, 3), ReLU(), Linear(3, 2)};
  SGD opt(net.parameters(), SGDOptions{.lr = 0.1});
  CrossEntropyLoss loss;
  std::vector<float> x(64 * 3, 0.5f);
  std::vector<std::int64_t> y(64, 1);
  const data::TensorDataset train(Tensor::from_vector(x, {64, 3}), Tensor::from_vector(y, {64}));
  parameter(net, "0.weight").value.data<float>()[0] = INFINITY;
  TrainerOptions o;
  o.batch = 16;
  o.epochs = 1;
  o.progress = false;
  Trainer t(net, opt, loss, o);
  try {
    t.fit(train);
    FAIL() << "expected NonFiniteError";
  } catch (const NonFiniteError& e) {
    EXPECT_EQ(e.module_path(), "0");
    EXPECT_EQ(std::string(e.what()).rfind("step 1 (epoch 1, batch 1): output of module 0 (", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace gpudl
