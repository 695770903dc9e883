// CPU reference implementation of the element-wise losses.
#include "gpudl/kernels/loss.h"

namespace gpudl::kernels::cpu {

void element_loss_forward_backward(float* loss_sum, float* correct, float* grad, const float* x, const float* target,
                                   index_t n, ElementLossKind kind, float margin, float loss_scale, float grad_scale,
                                   const Exec&) {
  double total = 0.0, hits = 0.0;
  for (index_t i = 0; i < n; ++i) {
    const ElementLoss e = element_loss(kind, x[i], target[i], margin);
    total += e.loss;
    hits += e.hit;
    if (grad != nullptr) grad[i] = grad_scale * e.grad;
  }
  *loss_sum += static_cast<float>(loss_scale * total);
  if (correct != nullptr) *correct += static_cast<float>(hits);
}

}  // namespace gpudl::kernels::cpu
