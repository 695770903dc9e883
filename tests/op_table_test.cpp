// Every case of the op table (tests/cases) on the CPU: the gradient check, and the module
// contract that backward needs a train-mode forward and that an eval-mode forward keeps nothing.
#include <gtest/gtest.h>

#include <string>

#include "gradcheck.h"
#include "op_cases.h"
#include "test_util.h"

namespace gpudl {
namespace {

using cases::OpCase;

class OpTable : public ::testing::TestWithParam<OpCase> {};

std::string case_name(const ::testing::TestParamInfo<OpCase>& info) { return cases::sanitize(info.param.name); }

TEST_P(OpTable, GradientsMatchCentralDifferences) {
  const OpCase& c = GetParam();
  manual_seed(testing::test_seed());
  const auto m = c.make();
  const Tensor x = cases::make_input(c, c.input, testing::test_seed() ^ 0x51);
  testing::expect_gradients_match(*m, x, 0x52, c.kink_margin, c.grad_step, c.grad_tolerance);
}

TEST_P(OpTable, BackwardAfterAnEvalForwardThrows) {
  const OpCase& c = GetParam();
  const auto m = c.make();
  const Tensor x = cases::make_input(c, c.input, testing::test_seed() ^ 0x53);
  m->eval();
  const Tensor y = m->forward(x);
  try {
    m->backward(Tensor::zeros(y.shape()));
    FAIL() << m->describe() << ": backward after an eval-mode forward did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train-mode forward"), std::string::npos) << e.what();
  }
  // And after a train-mode forward it works once, then needs another forward.
  m->train();
  const Tensor y2 = m->forward(x);
  EXPECT_NO_THROW(m->backward(Tensor::zeros(y2.shape()))) << m->describe();
  EXPECT_THROW(m->backward(Tensor::zeros(y2.shape())), Error) << m->describe() << ": a second backward";
}

TEST_P(OpTable, EvalForwardKeepsNoInputAlive) {
  const OpCase& c = GetParam();
  const auto m = c.make();
  const Tensor x = cases::make_input(c, c.input, testing::test_seed() ^ 0x54);
  m->eval();
  Tensor y = m->forward(x);
  y = Tensor();
  // Only this test holds the input's storage now (a module keeping it would add an owner).
  EXPECT_EQ(x.storage().use_count(), 1) << m->describe();
}

TEST(OpTable, CoversEveryActivationKind) {
  int found = 0;
  for (int k = 0; k < nn::kActivationCount; ++k) {
    const std::string name = kernels::activation_name(static_cast<nn::Activation>(k));
    for (const OpCase& c : cases::op_cases()) found += c.name == name ? 1 : 0;
  }
  EXPECT_EQ(found, nn::kActivationCount);
}

INSTANTIATE_TEST_SUITE_P(Cases, OpTable, ::testing::ValuesIn(cases::op_cases()), case_name);

}  // namespace
}  // namespace gpudl
