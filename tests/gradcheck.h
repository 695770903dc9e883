// Central-difference gradient checks for modules and losses, on the CPU (Caffe-style: a
// random scalar projection of the output, relative error with a floor, kinks avoided).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "gpudl/core/loss.h"
#include "gpudl/core/module.h"
#include "test_util.h"

namespace gpudl::testing {

// Step and tolerance for float32 central differences: the truncation error is O(h²) ~ 1e-6
// while rounding contributes ~ eps_f32 |L| / h ~ 1e-4 relative, so 1e-2 separates a correct
// gradient from a wrong one (a wrong formula is off by O(1)).
inline constexpr float kGradStep = 1e-2f;
inline constexpr double kGradTolerance = 1e-2;

// Error of an analytic derivative `a` against the numeric one `n`, relative to their size
// with a floor of 1 so that near-zero derivatives are compared absolutely.
inline double grad_error(double a, double n) { return std::abs(a - n) / std::max({std::abs(a), std::abs(n), 1.0}); }

// Checks dL/dx and dL/dparams of `m` in train mode for L = <r, m(x)> with r random. Inputs
// closer than `kink` to a non-differentiable point (0 for ReLU-like layers) are moved away.
inline void expect_gradients_match(Module& m, Tensor x, std::uint64_t salt, float kink_margin = 0.0f) {
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
      const float saved = p[i];
      p[i] = saved + kGradStep;
      const double plus = objective();
      p[i] = saved - kGradStep;
      const double minus = objective();
      p[i] = saved;
      const double numeric = (plus - minus) / (2.0 * kGradStep);
      const double e = grad_error(analytic[static_cast<std::size_t>(i)], numeric);
      if (e > worst) worst = e, worst_i = i;
    }
    EXPECT_LE(worst, kGradTolerance) << m.describe() << ": " << what << " element " << worst_i;
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
    const float saved = p[i];
    p[i] = saved + kGradStep;
    const double plus = value();
    p[i] = saved - kGradStep;
    const double minus = value();
    p[i] = saved;
    worst = std::max(worst, grad_error(analytic[static_cast<std::size_t>(i)], (plus - minus) / (2.0 * kGradStep)));
  }
  EXPECT_LE(worst, kGradTolerance) << loss.describe();
}

}  // namespace gpudl::testing
