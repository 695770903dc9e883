// Every case of the op table (tests/cases) on the CPU: the gradient check, the module contract
// that backward needs a train-mode forward and that an eval-mode forward keeps nothing, and each
// case's bf16/fp16 runs against its f32 run (the table's dtype axis).
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

// The gradient check of a low-precision run: central differences cannot resolve bf16's rounding
// (a step of 1e-2 moves a bf16 value by about one unit in its last place), so the reference is
// the f32 run of the same layer, itself checked against central differences above. Both runs get
// the same parameters, the same generator state and the same input and output gradient (rounded
// to the low type, so that only the layer's own roundings differ).
class OpTableLowPrecision : public ::testing::TestWithParam<cases::TypedCase> {};

std::string typed_name(const ::testing::TestParamInfo<cases::TypedCase>& info) { return cases::typed_name(info.param); }

TEST_P(OpTableLowPrecision, TracksTheF32Run) {
  const OpCase& c = GetParam().op;
  const DType low = GetParam().dtype;
  manual_seed(testing::test_seed());
  const auto ref = c.make();
  const auto m = c.make();
  m->load_state(ref->state());
  const std::vector<Generator*> gr = ref->generators(), gm = m->generators();
  ASSERT_EQ(gr.size(), gm.size());
  for (std::size_t i = 0; i < gr.size(); ++i) gm[i]->set_state(gr[i]->seed(), gr[i]->offset());
  m->set_precision(cases::precision_for(low));
  ASSERT_EQ(m->precision(), cases::precision_for(low));

  const Tensor x_low = cases::make_input(c, c.input, testing::test_seed() ^ 0x55).cast(low);
  const Tensor x = x_low.cast(DType::kF32);
  const Tensor y = ref->forward(x);
  const Tensor y_low = m->forward(x_low);
  ASSERT_EQ(y_low.shape(), y.shape());
  // Layers keep their input's type or compute in it (so the low path did run); recurrent layers
  // compute in f32.
  EXPECT_EQ(y_low.dtype(), c.f32_inside ? DType::kF32 : low) << dtype_name(y_low.dtype());
  const Tensor dy_low =
      Tensor::from_vector(testing::random_vector(static_cast<std::size_t>(y.numel()), 0x56), y.shape()).cast(low);
  const Tensor dx = ref->backward(dy_low.cast(DType::kF32));
  const Tensor dx_low = m->backward(dy_low);
  // The input gradient comes back in the input's type.
  EXPECT_EQ(dx_low.dtype(), low);

  const double tol = c.low_precision_units * cases::unit_roundoff(low);
  const auto f32 = [](const Tensor& t) { return t.as(DType::kF32).to_vector<float>(); };
  EXPECT_LE(testing::relative_error(f32(y_low), f32(y)), tol) << "output";
  EXPECT_LE(testing::relative_error(f32(dx_low), f32(dx)), tol) << "input gradient";
  const std::vector<Parameter*> pr = ref->parameters(), pm = m->parameters();
  ASSERT_EQ(pr.size(), pm.size());
  for (std::size_t i = 0; i < pr.size(); ++i) {
    // Masters and their gradients stay f32 under every precision.
    EXPECT_EQ(pm[i]->value.dtype(), DType::kF32) << pm[i]->name;
    ASSERT_EQ(pm[i]->grad.dtype(), DType::kF32) << pm[i]->name;
    EXPECT_LE(testing::relative_error(f32(pm[i]->grad), f32(pr[i]->grad)), tol) << "gradient of " << pm[i]->name;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, OpTableLowPrecision, ::testing::ValuesIn(cases::typed_cases(true)), typed_name);

}  // namespace
}  // namespace gpudl
