// The nn facade for activations and softmax: contract checks, then the CPU or CUDA twin of each kernel.
#include "gpudl/core/nn/activation.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"
#include "gpudl/kernels/activation.h"
#include "gpudl/kernels/softmax.h"

namespace gpudl::nn {

using namespace checks;
using detail::twin;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

void activation_forward(const Tensor& y, const Tensor& x, Activation kind, float alpha) {
  const Device d = check_f32("activation_forward", {&y, &x});
  same_shape("activation_forward", y, x);
  twin<&cpu::activation_forward, &cuda::activation_forward>(d, {}, y.data<float>(), x.data<float>(), x.numel(),
                                                             kind, alpha);
}

void activation_backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y, Activation kind,
                         float alpha) {
  const Device d = check_f32("activation_backward", {&dx, &dy, &x, &y});
  same_shape("activation_backward", dx, dy);
  same_shape("activation_backward", dy, x);
  same_shape("activation_backward", x, y);
  twin<&cpu::activation_backward, &cuda::activation_backward>(d, {}, dx.data<float>(), dy.data<float>(),
                                                               x.data<float>(), y.data<float>(), dx.numel(), kind,
                                                               alpha);
}

void softmax_forward(const Tensor& y, const Tensor& x, bool log) {
  const Device d = check_f32("softmax_forward", {&y, &x});
  same_shape("softmax_forward", y, x);
  const Rows r = rows_of("softmax_forward", x);
  twin<&cpu::softmax_forward, &cuda::softmax_forward>(d, {}, y.data<float>(), x.data<float>(), r.rows, r.cols, log);
}

void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
  const Device d = check_f32("softmax_backward", {&dx, &dy, &y});
  same_shape("softmax_backward", dx, dy);
  same_shape("softmax_backward", dy, y);
  const Rows r = rows_of("softmax_backward", y);
  twin<&cpu::softmax_backward, &cuda::softmax_backward>(d, {}, dx.data<float>(), dy.data<float>(), y.data<float>(),
                                                         r.rows, r.cols, log);
}

}  // namespace gpudl::nn
