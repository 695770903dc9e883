// The nn facade for activations and softmax: contract checks, then the CPU or CUDA twin of each kernel.
#include "gpudl/core/nn/activation.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"
#include "gpudl/core/detail/widen.h"
#include "gpudl/kernels/activation.h"
#include "gpudl/kernels/softmax.h"

namespace gpudl::nn {

using namespace checks;
using detail::twin;
using detail::any_low, detail::widen, detail::f32_output, detail::narrow_into, detail::one_type;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

void activation_forward(const Tensor& y, const Tensor& x, Activation kind, float alpha) {
  if (!one_type({&y, &x})) {
    // Mixed types (f32 in, bf16 out or the reverse): through FP32 copies, one rounding.
    const Tensor xf = widen(x);
    const Tensor yf = f32_output(y);
    activation_forward(yf, xf, kind, alpha);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_float("activation_forward", {&y, &x});
  same_shape("activation_forward", y, x);
  twin<&cpu::activation_forward, &cuda::activation_forward>(d, {}, y.raw(), x.raw(), x.dtype(), x.numel(), kind,
                                                             alpha);
}

void activation_backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y, Activation kind,
                         float alpha) {
  if (!one_type({&dx, &dy, &x, &y})) {
    const Tensor dxf = f32_output(dx);
    activation_backward(dxf, widen(dy), widen(x), widen(y), kind, alpha);
    narrow_into(dx, dxf);
    return;
  }
  const Device d = check_float("activation_backward", {&dx, &dy, &x, &y});
  same_shape("activation_backward", dx, dy);
  same_shape("activation_backward", dy, x);
  same_shape("activation_backward", x, y);
  twin<&cpu::activation_backward, &cuda::activation_backward>(d, {}, dx.raw(), dy.raw(), x.raw(), y.raw(), x.dtype(),
                                                               dx.numel(), kind, alpha);
}

void softmax_forward(const Tensor& y, const Tensor& x, bool log) {
  if (any_low({&y, &x})) {
    const Tensor xf = widen(x);
    const Tensor yf = detail::same_memory(y, x) ? xf : f32_output(y);
    softmax_forward(yf, xf, log);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_f32("softmax_forward", {&y, &x});
  same_shape("softmax_forward", y, x);
  const Rows r = rows_of("softmax_forward", x);
  twin<&cpu::softmax_forward, &cuda::softmax_forward>(d, {}, y.data<float>(), x.data<float>(), r.rows, r.cols, log);
}

void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
  if (any_low({&dx, &dy, &y})) {
    const Tensor dyf = widen(dy);
    const Tensor dxf = detail::same_memory(dx, dy) ? dyf : f32_output(dx);
    softmax_backward(dxf, dyf, widen(y), log);
    narrow_into(dx, dxf);
    return;
  }
  const Device d = check_f32("softmax_backward", {&dx, &dy, &y});
  same_shape("softmax_backward", dx, dy);
  same_shape("softmax_backward", dy, y);
  const Rows r = rows_of("softmax_backward", y);
  twin<&cpu::softmax_backward, &cuda::softmax_backward>(d, {}, dx.data<float>(), dy.data<float>(), y.data<float>(),
                                                         r.rows, r.cols, log);
}

}  // namespace gpudl::nn
