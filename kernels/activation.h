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

// y = f(x); `alpha` is LeakyReLU's negative slope or ELU's scale, ignored otherwise.
GPUDL_HD inline float activate(Activation kind, float x, float alpha) {
  switch (kind) {
    case Activation::kSigmoid: return sigmoid(x);
    case Activation::kTanh: return tanhf(x);
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
