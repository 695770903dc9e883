// CPU reference implementations of the optimizer update and gradient-clipping kernels.
#include "gpudl/kernels/optim.h"

#include <cmath>

#include "gpudl/kernels/cpu/parallel.h"

namespace gpudl::kernels::cpu {
namespace {

constexpr index_t kGrain = 1 << 15;  // parameters per thread at least

// Four distinct arrays and the step by value: with restrict parameters and the decay test
// out of the loop, the loop vectorises (sqrt and division included); a reference to the step
// inside a lambda kept it scalar, a quarter of an MLP training step.
template <bool kDecay>
void adam_loop(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, index_t n,
               AdamStep s) {
  if (!kDecay) s.weight_decay = 0.0f;
  for (index_t i = 0; i < n; ++i) adam_element(p[i], g[i], m[i], v[i], s);
}

void adam_range(float* p, const float* g, float* m, float* v, index_t n, const AdamStep& s) {
  if (s.weight_decay != 0.0f) {
    adam_loop<true>(p, g, m, v, n, s);
  } else {
    adam_loop<false>(p, g, m, v, n, s);
  }
}

}  // namespace

void sgd_update(float* param, const float* grad, float* momentum_buf, index_t n, const float* values, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step, const Exec&) {
  const SgdStep s{values[0], momentum, dampening, weight_decay, nesterov, first_step};
  parallel_for(n, kGrain, [&](index_t i0, index_t i1) {
    float spare = 0.0f;  // stands in for the buffer when there is none (momentum == 0), per thread
    for (index_t i = i0; i < i1; ++i) sgd_element(param[i], grad[i], momentum_buf ? momentum_buf[i] : spare, s);
  });
}

void adagrad_update(float* param, const float* grad, float* sum_sq, index_t n, const float* values, float eps,
                    float weight_decay, const Exec&) {
  const AdagradStep s{values[0], eps, weight_decay};
  for (index_t i = 0; i < n; ++i) adagrad_element(param[i], grad[i], sum_sq[i], s);
}

void rmsprop_update(float* param, const float* grad, float* square_avg, float* momentum_buf, index_t n,
                    const float* values, float alpha, float eps, float weight_decay, float momentum, const Exec&) {
  const RmspropStep s{values[0], alpha, eps, weight_decay, momentum};
  float unused = 0.0f;
  for (index_t i = 0; i < n; ++i) {
    rmsprop_element(param[i], grad[i], square_avg[i], momentum_buf ? momentum_buf[i] : unused, s);
  }
}

void adadelta_update(float* param, const float* grad, float* square_avg, float* acc_delta, index_t n,
                     const float* values, float rho, float eps, float weight_decay, const Exec&) {
  const AdadeltaStep s{values[0], rho, eps, weight_decay};
  for (index_t i = 0; i < n; ++i) adadelta_element(param[i], grad[i], square_avg[i], acc_delta[i], s);
}

void adam_update(float* param, const float* grad, float* m, float* v, index_t n, const float* values, float beta1,
                 float beta2, float eps, float weight_decay, bool decoupled_weight_decay, const Exec&) {
  const AdamStep s{beta1, beta2, eps, weight_decay, values[0], values[1], values[2], decoupled_weight_decay};
  parallel_for(n, kGrain,
               [&](index_t i0, index_t i1) { adam_range(param + i0, grad + i0, m + i0, v + i0, i1 - i0, s); });
}

void write_values(float* dst, const ValueBlock& block, const Exec&) {
  for (int i = 0; i < block.count; ++i) dst[i] = block.values[i];
}

void sum_squares(float* accumulator, const float* x, index_t n, const Exec&) {
  // Double accumulation makes this the accurate reference the GPU's float tree is held to.
  double acc = 0.0;
  for (index_t i = 0; i < n; ++i) acc += static_cast<double>(x[i]) * x[i];
  *accumulator = static_cast<float>(static_cast<double>(*accumulator) + acc);
}

void norm_from_sum_squares(float* norm, const float* sum_squares, const Exec&) { *norm = sqrtf(*sum_squares); }

void clip_by_norm(float* x, index_t n, const float* total_sum_squares, float max_norm, const Exec&) {
  const float c = clip_coefficient(*total_sum_squares, max_norm);
  if (c == 1.0f) return;  // x * 1 == x exactly, so skip the pass
  for (index_t i = 0; i < n; ++i) x[i] *= c;
}

}  // namespace gpudl::kernels::cpu
