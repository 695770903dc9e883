// Element-wise losses (MSE, binary cross-entropy on logits, margin/perceptron criterion) with
// their gradients, declared identically for both backends; the per-element math is shared.
#pragma once

#include <cmath>

#include "gpudl/kernels/common.h"

namespace gpudl::kernels {

// Loss, gradient and "correct" indicator of one element.
struct ElementLoss {
  float loss;
  float grad;
  float hit;
};

GPUDL_HD inline ElementLoss mse_element(float pred, float target) {
  const float d = pred - target;
  return {d * d, 2.0f * d, 0.0f};
}

// Binary cross-entropy on a logit x with target t in [0, 1], written so that neither exp
// overflows: max(x, 0) - x t + log(1 + e^{-|x|}); its gradient is σ(x) - t. A hit is a
// logit on the same side of 0 as the target is of 1/2.
GPUDL_HD inline ElementLoss bce_logits_element(float x, float t) {
  const float loss = fmaxf(x, 0.0f) - x * t + log1pf(expf(-fabsf(x)));
  const float s = x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
  return {loss, s - t, (x > 0.0f) == (t > 0.5f) ? 1.0f : 0.0f};
}

// max(0, margin - t x) for a target t in {-1, +1}: margin 0 is Rosenblatt's perceptron
// criterion (only mistakes cost), margin 1 the hinge loss of a linear SVM.
GPUDL_HD inline ElementLoss margin_element(float x, float t, float margin) {
  const float m = margin - t * x;
  return {m > 0.0f ? m : 0.0f, m > 0.0f ? -t : 0.0f, t * x > 0.0f ? 1.0f : 0.0f};
}

enum class ElementLossKind : unsigned char { kMse, kBceLogits, kMargin };

GPUDL_HD inline ElementLoss element_loss(ElementLossKind kind, float x, float t, float margin) {
  switch (kind) {
    case ElementLossKind::kMse: return mse_element(x, t);
    case ElementLossKind::kBceLogits: return bce_logits_element(x, t);
    case ElementLossKind::kMargin: return margin_element(x, t, margin);
  }
  return {0.0f, 0.0f, 0.0f};
}

namespace cpu {
#include "gpudl/kernels/loss.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/loss.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
