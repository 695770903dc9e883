// The nn facade for cross-entropy and the element-wise losses: contract checks, then the CPU or CUDA twin of each kernel.
#include "gpudl/core/nn/loss.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"
#include "gpudl/kernels/loss.h"
#include "gpudl/kernels/softmax.h"

namespace gpudl::nn {

using namespace checks;
using detail::twin;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

void cross_entropy(const Tensor& loss_sum, const Tensor& correct, const Tensor& grad, const Tensor& logits,
                   const Tensor& labels, float label_smoothing, float loss_scale, float grad_scale) {
  const Device d = check_f32("cross_entropy", {&loss_sum, &correct, &grad, &logits});
  check("cross_entropy", DType::kI64, {&labels});
  same_device("cross_entropy", logits, labels);
  same_shape("cross_entropy", grad, logits);
  if (logits.ndim() != 2 || labels.ndim() != 1 || labels.dim(0) != logits.dim(0)) {
    throw ShapeError("cross_entropy: logits " + logits.shape().str() + " and labels " + labels.shape().str() +
                     " are not (N, classes) and (N)");
  }
  numel_is("cross_entropy", loss_sum, 1, "the loss sum");
  numel_is("cross_entropy", correct, 1, "the correct count");
  twin<&cpu::cross_entropy_forward_backward, &cuda::cross_entropy_forward_backward>(
      d, {}, loss_sum.data<float>(), correct.data<float>(), grad.data<float>(), logits.data<float>(),
      labels.data<std::int64_t>(), logits.dim(0), logits.dim(1), label_smoothing, loss_scale, grad_scale);
}

void element_loss(const Tensor& loss_sum, const Tensor& correct, const Tensor& grad, const Tensor& x,
                  const Tensor& target, ElementLossKind kind, float margin, float loss_scale, float grad_scale) {
  const Device d = check_f32("element_loss", {&loss_sum, &correct, &grad, &x, &target});
  same_shape("element_loss", grad, x);
  same_shape("element_loss", x, target);
  numel_is("element_loss", loss_sum, 1, "the loss sum");
  numel_is("element_loss", correct, 1, "the correct count");
  twin<&cpu::element_loss_forward_backward, &cuda::element_loss_forward_backward>(
      d, {}, loss_sum.data<float>(), correct.data<float>(), grad.data<float>(), x.data<float>(),
      target.data<float>(), x.numel(), kind, margin, loss_scale, grad_scale);
}

}  // namespace gpudl::nn
