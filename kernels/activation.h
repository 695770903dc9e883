// Activation functions and their derivatives, declared identically for both backends; the
// per-element math is written once here and shared.
#pragma once

#include <cmath>
#include <cstdint>

#include "gpudl/kernels/common.h"

namespace gpudl::kernels {

enum class Activation : std::uint8_t { kSigmoid, kTanh, kRelu, kLeakyRelu, kElu };

// The logistic function without overflow for large |x|.
GPUDL_HD inline float sigmoid(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
}

// tanh for the CPU through expf: glibc's tanhf goes through expm1f, several times slower, and
// was a quarter of an LSTM training step. Below |x| = 0.1 the Taylor series to x⁷ (truncation
// < 3e-11) avoids the cancellation in 1 − e^{−2|x|}; above, (1 − e)/(1 + e) is within a few
// ulp (expf's 1 ulp, amplified at most 1 / 0.18 times). CUDA's tanhf is fast and is kept.
GPUDL_HD inline float fast_tanh(float x) {
#if defined(__CUDA_ARCH__)
  return tanhf(x);
#else
  const float a = fabsf(x);
  if (a < 0.1f) {
    const float x2 = x * x;
    return x * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f))));
  }
  const float e = expf(-2.0f * a);
  return copysignf((1.0f - e) / (1.0f + e), x);
#endif
}

// y = f(x); `alpha` is LeakyReLU's negative slope or ELU's scale, ignored otherwise.
GPUDL_HD inline float activate(Activation kind, float x, float alpha) {
  switch (kind) {
    case Activation::kSigmoid: return sigmoid(x);
    case Activation::kTanh: return fast_tanh(x);
    case Activation::kRelu: return x > 0.0f || x != x ? x : 0.0f;  // NaN passes through, as it must to be seen
    case Activation::kLeakyRelu: return x > 0.0f ? x : alpha * x;
    case Activation::kElu: return x > 0.0f ? x : alpha * (expf(x) - 1.0f);
  }
  return x;
}

// dL/dx from dL/dy, using whichever of x and y gives the derivative cheaply: σ' = y(1 - y),
// tanh' = 1 - y², ELU' = y + α for x <= 0. ReLU's derivative at 0 is taken as 0.
GPUDL_HD inline float activate_grad(Activation kind, float dy, float x, float y, float alpha) {
  switch (kind) {
    case Activation::kSigmoid: return dy * y * (1.0f - y);
    case Activation::kTanh: return dy * (1.0f - y * y);
    case Activation::kRelu: return x > 0.0f ? dy : 0.0f;
    case Activation::kLeakyRelu: return x > 0.0f ? dy : alpha * dy;
    case Activation::kElu: return x > 0.0f ? dy : dy * (y + alpha);
  }
  return dy;
}

namespace cpu {
#include "gpudl/kernels/activation.inc"
}  // namespace cpu

namespace cuda {
#include "gpudl/kernels/activation.inc"
}  // namespace cuda

}  // namespace gpudl::kernels
