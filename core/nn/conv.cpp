// The nn facade for 2-D convolution: contract checks, then the CPU or CUDA twin of each kernel.
#include "gpudl/core/nn/conv.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"
#include "gpudl/core/runtime/context.h"
#include "gpudl/kernels/conv.h"

namespace gpudl::nn {

using namespace checks;
using detail::twin;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

namespace {
void check_conv(const char* op, const Tensor& x, const Tensor& weight, const Tensor& y, const ConvGeometry& g) {
  kernels::validate(g);
  // By element counts: TimeDelay runs (N, C, T) tensors as images of height 1.
  if (x.numel() != g.n * g.c * g.h * g.w || weight.numel() != g.k * (g.c / g.groups) * g.r * g.s ||
      y.numel() != g.n * g.k * g.out_h() * g.out_w()) {
    throw ShapeError(std::string(op) + ": x " + x.shape().str() + ", weight " + weight.shape().str() + ", y " +
                     y.shape().str() + " do not fit " + kernels::describe(g));
  }
}

ConvOptions with_dtype(ConvOptions o, DType dtype) {
  o.dtype = dtype;
  return o;
}

// The workspace the convolution kernels of `device` ask for, from its context.
struct ConvWorkspace {
  void* data;
  std::size_t bytes;
};
ConvWorkspace conv_workspace(Device device, const ConvGeometry& g, const ConvOptions& o) {
  const std::size_t bytes =
      detail::twin_value<&cpu::conv2d_workspace_bytes, &cuda::conv2d_workspace_bytes>(device, {.dnn = true}, g, o);
  return {Context::get(device).workspace(bytes), bytes};
}
}  // namespace

void conv2d_forward(const std::string& who, const Tensor& y, const Tensor& x, const Tensor& weight,
                    const Tensor& bias, const ConvGeometry& g, const ConvOptions& o) {
  named(who, [&] {
    // x, weight and y in one type (f32, or bf16/f16 with FP32 sums); the bias is an FP32 parameter.
    const Device d = check_float("conv2d_forward", {&y, &x, &weight});
    check_conv("conv2d_forward", x, weight, y, g);
    if (bias.defined()) {
      check_f32("conv2d_forward", {&bias});
      same_device("conv2d_forward", x, bias);
      numel_is("conv2d_forward", bias, g.k, "the bias");
    }
    const ConvOptions typed = with_dtype(o, x.dtype());
    const ConvWorkspace ws = conv_workspace(d, g, typed);
    twin<&cpu::conv2d_forward, &cuda::conv2d_forward>(d, {.blas = true, .dnn = true}, y.raw(), x.raw(),
                                                       weight.raw(), data_or_null(bias), g, typed, ws.data, ws.bytes);
  });
}

void conv2d_backward(const std::string& who, const Tensor& dx, const Tensor& weight_grad, const Tensor& bias_grad,
                     const Tensor& dy, const Tensor& x, const Tensor& weight, const ConvGeometry& g,
                     const ConvOptions& o) {
  named(who, [&] {
    const Device d = check_float("conv2d_backward", {&dy, &x, &weight});
    check_f32("conv2d_backward", {&weight_grad});
    same_device("conv2d_backward", x, weight_grad);
    check_conv("conv2d_backward", x, weight, dy, g);
    same_shape("conv2d_backward", weight_grad, weight);
    if (dx.defined()) {
      check("conv2d_backward", x.dtype(), {&x, &dx});
      same_shape("conv2d_backward", dx, x);
    }
    if (bias_grad.defined()) {
      check_f32("conv2d_backward", {&bias_grad});
      same_device("conv2d_backward", x, bias_grad);
      numel_is("conv2d_backward", bias_grad, g.k, "the bias gradient");
    }
    const ConvOptions typed = with_dtype(o, x.dtype());
    const ConvWorkspace ws = conv_workspace(d, g, typed);
    const detail::Handles handles{.blas = true, .dnn = true};
    if (dx.defined()) {
      twin<&cpu::conv2d_backward_data, &cuda::conv2d_backward_data>(d, handles, dx.raw(), dy.raw(), weight.raw(), g,
                                                                     typed, ws.data, ws.bytes);
    }
    twin<&cpu::conv2d_backward_filter, &cuda::conv2d_backward_filter>(d, handles, weight_grad.data<float>(),
                                                                       data_or_null(bias_grad), dy.raw(), x.raw(), g,
                                                                       typed, ws.data, ws.bytes);
  });
}

// The convolution's own checks with the roles swapped: the transposed input is shaped as the
// convolution's output, the transposed output as its input.
void conv_transpose2d_forward(const std::string& who, const Tensor& y, const Tensor& x, const Tensor& weight,
                              const Tensor& bias, const ConvGeometry& g, const ConvOptions& o) {
  named(who, [&] {
    const Device d = check_float("conv_transpose2d_forward", {&y, &x, &weight});
    check_conv("conv_transpose2d_forward", y, weight, x, g);
    if (bias.defined()) {
      check_f32("conv_transpose2d_forward", {&bias});
      same_device("conv_transpose2d_forward", x, bias);
      numel_is("conv_transpose2d_forward", bias, g.c, "the bias");
    }
    const ConvOptions typed = with_dtype(o, x.dtype());
    const ConvWorkspace ws = conv_workspace(d, g, typed);
    twin<&cpu::conv_transpose2d_forward, &cuda::conv_transpose2d_forward>(
        d, {.blas = true, .dnn = true}, y.raw(), x.raw(), weight.raw(), data_or_null(bias), g, typed, ws.data,
        ws.bytes);
  });
}

void conv_transpose2d_backward(const std::string& who, const Tensor& dx, const Tensor& weight_grad,
                               const Tensor& bias_grad, const Tensor& dy, const Tensor& x, const Tensor& weight,
                               const ConvGeometry& g, const ConvOptions& o) {
  named(who, [&] {
    const Device d = check_float("conv_transpose2d_backward", {&dy, &x, &weight});
    check_f32("conv_transpose2d_backward", {&weight_grad});
    same_device("conv_transpose2d_backward", x, weight_grad);
    check_conv("conv_transpose2d_backward", dy, weight, x, g);
    same_shape("conv_transpose2d_backward", weight_grad, weight);
    if (dx.defined()) {
      check("conv_transpose2d_backward", x.dtype(), {&x, &dx});
      same_shape("conv_transpose2d_backward", dx, x);
    }
    if (bias_grad.defined()) {
      check_f32("conv_transpose2d_backward", {&bias_grad});
      same_device("conv_transpose2d_backward", x, bias_grad);
      numel_is("conv_transpose2d_backward", bias_grad, g.c, "the bias gradient");
    }
    const ConvOptions typed = with_dtype(o, x.dtype());
    const ConvWorkspace ws = conv_workspace(d, g, typed);
    const detail::Handles handles{.blas = true, .dnn = true};
    if (dx.defined()) {
      twin<&cpu::conv2d_forward, &cuda::conv2d_forward>(d, handles, dx.raw(), dy.raw(), weight.raw(),
                                                         static_cast<const float*>(nullptr), g, typed, ws.data,
                                                         ws.bytes);
    }
    twin<&cpu::conv2d_backward_filter, &cuda::conv2d_backward_filter>(
        d, handles, weight_grad.data<float>(), static_cast<float*>(nullptr), x.raw(), dy.raw(), g, typed, ws.data,
        ws.bytes);
    if (bias_grad.defined()) {
      twin<&cpu::conv_transpose2d_backward_bias, &cuda::conv_transpose2d_backward_bias>(
          d, {}, bias_grad.data<float>(), dy.raw(), g, typed);
    }
  });
}

}  // namespace gpudl::nn
