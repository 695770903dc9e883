// Optimizer update kernels (SGD, Adagrad, RMSprop, Adadelta, Adam/AdamW) and gradient-norm clipping,
// declared identically for both backends; the per-element update rules are written once here.
#pragma once

#include <cmath>

#include "gpudl/kernels/common.h"

namespace gpudl::kernels {

// The rules follow PyTorch's documented algorithms (torch.optim.*), so hyperparameters and
// results carry over. Weight decay adds weight_decay * p to the gradient before anything else,
// except in AdamW, which shrinks p by (1 - lr * weight_decay) instead. Each struct holds one
// step's constants exactly as the kernels receive them, so both backends round alike.

struct SgdStep {
  float lr, momentum, dampening, weight_decay;
  bool nesterov;
  bool first_step;  // the momentum buffer starts as the first gradient, undamped
};

// `buf` is read and written only when momentum != 0.
GPUDL_HD inline void sgd_element(float& p, float g, float& buf, const SgdStep& s) {
  if (s.weight_decay != 0.0f) g += s.weight_decay * p;
  if (s.momentum != 0.0f) {
    buf = s.first_step ? g : s.momentum * buf + (1.0f - s.dampening) * g;
    g = s.nesterov ? g + s.momentum * buf : buf;
  }
  p -= s.lr * g;
}

struct AdagradStep {
  float lr, eps, weight_decay;
};

GPUDL_HD inline void adagrad_element(float& p, float g, float& sum_sq, const AdagradStep& s) {
  if (s.weight_decay != 0.0f) g += s.weight_decay * p;
  sum_sq += g * g;
  p -= s.lr * (g / (sqrtf(sum_sq) + s.eps));
}

struct RmspropStep {
  float lr, alpha, eps, weight_decay, momentum;
};

// `buf` is read and written only when momentum > 0. Unlike SGD's, this buffer starts at zero.
GPUDL_HD inline void rmsprop_element(float& p, float g, float& square_avg, float& buf, const RmspropStep& s) {
  if (s.weight_decay != 0.0f) g += s.weight_decay * p;
  square_avg = s.alpha * square_avg + (1.0f - s.alpha) * (g * g);
  const float avg = sqrtf(square_avg) + s.eps;
  if (s.momentum > 0.0f) {
    buf = s.momentum * buf + g / avg;
    p -= s.lr * buf;
  } else {
    p -= s.lr * (g / avg);
  }
}

struct AdadeltaStep {
  float lr, rho, eps, weight_decay;
};

GPUDL_HD inline void adadelta_element(float& p, float g, float& square_avg, float& acc_delta, const AdadeltaStep& s) {
  if (s.weight_decay != 0.0f) g += s.weight_decay * p;
  square_avg = s.rho * square_avg + (1.0f - s.rho) * (g * g);
  const float delta = sqrtf(acc_delta + s.eps) / sqrtf(square_avg + s.eps) * g;
  acc_delta = s.rho * acc_delta + (1.0f - s.rho) * (delta * delta);
  p -= s.lr * delta;
}

struct AdamStep {
  float beta1, beta2, eps, weight_decay;
  float step_size;    // lr / (1 - beta1^t)
  float sqrt_bc2;     // sqrt(1 - beta2^t)
  float decay;        // 1 - lr * weight_decay, for the decoupled (AdamW) form
  bool decoupled;
};

// The three values of an Adam step that change with the step, computed on the host (so that
// both backends get the same bits): {step_size, sqrt_bc2, decay} as AdamStep names them.
struct AdamValues {
  float step_size, sqrt_bc2, decay;
};
inline AdamValues adam_values(float lr, float weight_decay, float bias_correction1, float bias_correction2) {
  return AdamValues{lr / bias_correction1, sqrtf(bias_correction2), 1.0f - lr * weight_decay};
}

// Up to kValueBlock floats written by one write_values launch.
constexpr int kValueBlock = 48;
struct ValueBlock {
  float values[kValueBlock];
  int count;
};

GPUDL_HD inline void adam_element(float& p, float g, float& m, float& v, const AdamStep& s) {
  if (s.weight_decay != 0.0f) {
    if (s.decoupled) {
      p *= s.decay;
    } else {
      g += s.weight_decay * p;
    }
  }
  m = s.beta1 * m + (1.0f - s.beta1) * g;
  v = s.beta2 * v + (1.0f - s.beta2) * (g * g);
  p -= s.step_size * (m / (sqrtf(v) / s.sqrt_bc2 + s.eps));
}

// The factor clip_by_norm scales by: min(1, max_norm / (norm + 1e-6)), as PyTorch's
// clip_grad_norm_. A NaN norm gives NaN (and NaN gradients), as there, rather than hiding it.
GPUDL_HD inline float clip_coefficient(float total_sum_squares, float max_norm) {
  const float c = max_norm / (sqrtf(total_sum_squares) + 1e-6f);
  return c > 1.0f ? 1.0f : c;
}

namespace cpu {
#include "gpudl/kernels/optim.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/optim.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
