// Activation functions and their derivatives, declared identically for both backends; the
// per-element math is written once here and shared.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/dtype.h"

namespace gpudl::kernels {

// A new kind is added here (the enumerator before kCount, its math in activate/activate_grad,
// its name in activation_name) and as a layer class in layers/activation.h; the case table of
// the tests and benchmarks picks it up from kCount.
enum class Activation : std::uint8_t { kSigmoid, kTanh, kRelu, kLeakyRelu, kElu, kGelu, kGeluTanh, kSilu, kCount };
inline constexpr int kActivationCount = static_cast<int>(Activation::kCount);

// "ReLU": the layer's name, for messages, tables and benchmarks.
inline const char* activation_name(Activation kind) {
  switch (kind) {
    case Activation::kSigmoid: return "Sigmoid";
    case Activation::kTanh: return "Tanh";
    case Activation::kRelu: return "ReLU";
    case Activation::kLeakyRelu: return "LeakyReLU";
    case Activation::kElu: return "ELU";
    case Activation::kGelu: return "GELU";
    case Activation::kGeluTanh: return "GELU(tanh)";
    case Activation::kSilu: return "SiLU";
    case Activation::kCount: break;
  }
  return "?";
}

// e^x on the CPU without a libm call, so that loops over it vectorise (glibc's expf is a
// scalar call). x = n ln2 + r with |r| <= ln2 / 2 (n rounded by the 1.5 * 2^23 trick, ln2 in
// two parts), e^r by its Taylor series to r^7 (truncation < 6e-9 relative), 2^n put into the
// exponent bits. x is clamped to [-87.3, 88.3], where 2^n stays a normal float: beyond, the
// result saturates at about 1.2e-38 or 2.2e38 instead of reaching 0 or infinity. NaN stays
// NaN. CUDA keeps its own expf.
GPUDL_HD inline float fast_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  const bool nan = x != x;
  float v = nan ? 0.0f : x;
  v = v < -87.3f ? -87.3f : (v > 88.3f ? 88.3f : v);
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (v * 1.44269504088896341f + kRound) - kRound;
  const float r = (v - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r / 5040))))));
  const float scale = std::bit_cast<float>(static_cast<std::int32_t>(static_cast<std::int32_t>(n) + 127) << 23);
  return nan ? x : p * scale;
#endif
}

// The logistic function, 1 / (1 + e^-x): the exponential saturates rather than overflowing,
// and there is no branch, so CPU loops over it vectorise.
GPUDL_HD inline float sigmoid(float x) {
#if defined(__CUDA_ARCH__)
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
#else
  return 1.0f / (1.0f + fast_exp(-x));
#endif
}

// tanh for the CPU through fast_exp: glibc's tanhf goes through expm1f, several times slower,
// and was a quarter of an LSTM training step. Below |x| = 0.1 the Taylor series to x⁷
// (truncation < 3e-11) avoids the cancellation in 1 − e^{−2|x|}; above, (1 − e)/(1 + e) is
// within a few ulp (the exponential's error, amplified at most 1 / 0.18 times). CUDA's tanhf
// is fast and is kept.
GPUDL_HD inline float fast_tanh(float x) {
#if defined(__CUDA_ARCH__)
  return tanhf(x);
#else
  // Both branches computed and one selected: no branch, so CPU loops vectorise.
  const float a = fabsf(x);
  const float x2 = x * x;
  const float series = x * (1.0f + x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f))));
  const float e = fast_exp(-2.0f * a);
  const float far = copysignf((1.0f - e) / (1.0f + e), x);
  return a < 0.1f ? series : far;
#endif
}

// GELU's tanh form (Hendrycks and Gimpel 2016): 0.5 x (1 + tanh(u)), u = √(2/π)(x + 0.044715 x³).
inline constexpr float kGeluTanhScale = 0.7978845608028654f;  // √(2/π)
inline constexpr float kGeluTanhCubic = 0.044715f;
inline constexpr float kInvSqrt2 = 0.7071067811865476f;
inline constexpr float kInvSqrt2Pi = 0.3989422804014327f;  // 1 / √(2π)

// y = f(x); `alpha` is LeakyReLU's negative slope or ELU's scale, ignored otherwise.
GPUDL_HD inline float activate(Activation kind, float x, float alpha) {
  switch (kind) {
    case Activation::kSigmoid: return sigmoid(x);
    case Activation::kTanh: return fast_tanh(x);
    case Activation::kRelu: return x > 0.0f || x != x ? x : 0.0f;  // NaN passes through, as it must to be seen
    case Activation::kLeakyRelu: return x > 0.0f ? x : alpha * x;
    case Activation::kElu: return x > 0.0f ? x : alpha * (expf(x) - 1.0f);
    case Activation::kGelu: return 0.5f * x * (1.0f + erff(x * kInvSqrt2));  // x Φ(x)
    case Activation::kGeluTanh:
      return 0.5f * x * (1.0f + fast_tanh(kGeluTanhScale * (x + kGeluTanhCubic * x * x * x)));
    case Activation::kSilu: return x * sigmoid(x);
    case Activation::kCount: break;
  }
  return x;
}

// dL/dx from dL/dy, using whichever of x and y gives the derivative cheaply: σ' = y(1 - y),
// tanh' = 1 - y², ELU' = y + α for x <= 0. ReLU's derivative at 0 is taken as 0. GELU' = Φ(x) +
// x φ(x); its tanh form's is 0.5 (1 + t) + 0.5 x (1 - t²) u'; SiLU' = σ(x) (1 + x (1 - σ(x))).
GPUDL_HD inline float activate_grad(Activation kind, float dy, float x, float y, float alpha) {
  switch (kind) {
    case Activation::kSigmoid: return dy * y * (1.0f - y);
    // (1 - y)(1 + y), not 1 - y*y: near |y| = 1 the rounding of y*y (or its absence where the
    // compiler fuses it into an FMA) is magnified ~1/(1 - y²) times; 1 - y is exact there.
    case Activation::kTanh: return dy * ((1.0f - y) * (1.0f + y));
    case Activation::kRelu: return x > 0.0f ? dy : 0.0f;
    case Activation::kLeakyRelu: return x > 0.0f ? dy : alpha * dy;
    case Activation::kElu: return x > 0.0f ? dy : dy * (y + alpha);
    case Activation::kGelu:
      return dy * (0.5f * (1.0f + erff(x * kInvSqrt2)) + x * kInvSqrt2Pi * expf(-0.5f * x * x));
    case Activation::kGeluTanh: {
      const float t = fast_tanh(kGeluTanhScale * (x + kGeluTanhCubic * x * x * x));
      const float du = kGeluTanhScale * (1.0f + 3.0f * kGeluTanhCubic * x * x);
      return dy * (0.5f * (1.0f + t) + 0.5f * x * ((1.0f - t) * (1.0f + t)) * du);
    }
    case Activation::kSilu: {
      const float s = sigmoid(x);
      return dy * s * (1.0f + x * (1.0f - s));
    }
    case Activation::kCount: break;
  }
  return dy;
}

namespace cpu {
#include "gpudl/kernels/activation.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/activation.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
