// CPU reference implementations of the activation kernels.
#include "gpudl/kernels/activation.h"

namespace gpudl::kernels::cpu {

void activation_forward(float* y, const float* x, index_t n, Activation kind, float alpha, const Exec&) {
  for (index_t i = 0; i < n; ++i) y[i] = activate(kind, x[i], alpha);
}

void activation_backward(float* dx, const float* dy, const float* x, const float* y, index_t n, Activation kind,
                         float alpha, const Exec&) {
  for (index_t i = 0; i < n; ++i) dx[i] = activate_grad(kind, dy[i], x[i], y[i], alpha);
}

}  // namespace gpudl::kernels::cpu
