// Central-difference gradient checks for modules and losses, on the CPU (Caffe-style: a
// random scalar projection of the output, relative error with a floor, kinks avoided).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gpudl/core/training/loss.h"
#include "gpudl/core/runtime/module.h"
#include "test_util.h"

namespace gpudl::testing {

// Step and tolerance for float32 central differences. A plain central difference is off by
// (h² / 6) times the third derivative, which through a batch norm over four samples reached
// 1.5e-2 for some random inputs; numeric_derivative() below combines the steps h and h / 2
// (Richardson), which cancels that term and leaves O(h⁴), while rounding contributes
// ~ eps_f32 |L| / h ~ 1e-5 relative. So 1e-2 separates a correct gradient from a wrong one
// (a wrong formula is off by O(1)).
inline constexpr float kGradStep = 1e-2f;
inline constexpr double kGradTolerance = 1e-2;

// dL/dp[i] from `objective` (L as a double) by central differences at h = kGradStep and h / 2
// combined as (8 D(h/2) − D(h)) / (6h), D(s) = L(p + s) − L(p − s); p[i] is restored.
template <class Objective>
double numeric_derivative(float* p, std::int64_t i, Objective objective, float step = kGradStep) {
  const float saved = p[i];
  auto at = [&](float delta) {
    p[i] = saved + delta;
    return objective();
  };
  const double wide = at(step) - at(-step);
  const double narrow = at(step / 2) - at(-step / 2);
  p[i] = saved;
  return (8.0 * narrow - wide) / (6.0 * static_cast<double>(step));
}

// Error of an analytic derivative `a` against the numeric one `n`, relative to their size
// with a floor of 1 so that near-zero derivatives are compared absolutely.
inline double grad_error(double a, double n) { return std::abs(a - n) / std::max({std::abs(a), std::abs(n), 1.0}); }

// Checks dL/dx and dL/dparams of `m` in train mode for L = <r, m(x)> with r random. Inputs
// closer than `kink` to a non-differentiable point (0 for ReLU-like layers) are moved away.
// `step` and `tolerance` default to kGradStep and kGradTolerance (the case table may set others).
inline void expect_gradients_match(Module& m, Tensor x, std::uint64_t salt, float kink_margin = 0.0f,
                                   float step = kGradStep, double tolerance = kGradTolerance) {
  m.train();
  if (kink_margin > 0.0f) {
    float* p = x.data<float>();
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      if (std::abs(p[i]) < kink_margin) p[i] = p[i] < 0 ? -kink_margin : kink_margin;
    }
  }
  // Random generators (Dropout) restart from the same state for every evaluation.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> rng_state;
  for (Generator* g : m.generators()) rng_state.emplace_back(g->seed(), g->offset());
  auto restore_rng = [&] {
    auto gens = m.generators();
    for (std::size_t i = 0; i < gens.size(); ++i) gens[i]->set_state(rng_state[i].first, rng_state[i].second);
  };
  restore_rng();
  const Tensor y = m.forward(x);
  const auto r = random_vector(static_cast<std::size_t>(y.numel()), salt, -1.0f, 1.0f);
  auto objective = [&] {
    restore_rng();
    const auto out = m.forward(x).to_vector<float>();
    double s = 0.0;
    for (std::size_t i = 0; i < out.size(); ++i) s += static_cast<double>(r[i]) * out[i];
    return s;
  };
  m.zero_grad();
  const Tensor dx = m.backward(Tensor::from_vector(r, y.shape()));
  // Integer inputs (token ids) have no gradient; the module must say so with an undefined one.
  const bool float_input = x.dtype() == DType::kF32;
  if (!float_input) {
    EXPECT_FALSE(dx.defined()) << m.describe() << ": a gradient for integer input";
  } else {
    ASSERT_EQ(dx.shape(), x.shape()) << m.describe();
  }
  const auto analytic_x = float_input ? dx.to_vector<float>() : std::vector<float>();

  auto check = [&](const Tensor& t, const std::vector<float>& analytic, const std::string& what) {
    float* p = t.data<float>();
    double worst = 0.0;
    std::int64_t worst_i = -1;
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      const double numeric = numeric_derivative(p, i, objective, step);
      const double e = grad_error(analytic[static_cast<std::size_t>(i)], numeric);
      if (e > worst) worst = e, worst_i = i;
    }
    EXPECT_LE(worst, tolerance) << m.describe() << ": " << what << " element " << worst_i;
  };
  if (float_input) check(x, analytic_x, "input");
  for (Parameter* prm : m.parameters()) {
    const auto analytic = prm->grad.to_vector<float>();
    check(prm->value, analytic, "parameter " + prm->name);
  }
}

// Checks dL/doutput of a loss against central differences of its scalar value.
inline void expect_loss_gradient_matches(Loss& loss, Tensor output, const Tensor& target) {
  auto value = [&] { return static_cast<double>(loss.forward(output, target).to_vector<float>()[0]); };
  value();
  const auto analytic = loss.backward().to_vector<float>();
  float* p = output.data<float>();
  double worst = 0.0;
  for (std::int64_t i = 0; i < output.numel(); ++i) {
    worst = std::max(worst, grad_error(analytic[static_cast<std::size_t>(i)], numeric_derivative(p, i, value)));
  }
  EXPECT_LE(worst, kGradTolerance) << loss.describe();
}

}  // namespace gpudl::testing
