// Internal to layers/: runs the convolution kernels of a tensor's backend with the device
// context's handles and workspace, for Conv2d and TimeDelay. Not part of the public API.
#pragma once

#include <string>

#include "gpudl/config.h"
#include "gpudl/core/context.h"
#include "gpudl/core/dispatch.h"
#include "gpudl/core/tensor.h"
#include "gpudl/kernels/conv.h"

namespace gpudl::detail {

// The convolution functions of one backend. GPUDL_DISPATCH's launch context carries no cuDNN
// handle, so the layers pick the backend themselves and ask the context for both handles.
struct ConvBackend {
  decltype(&kernels::cpu::conv2d_workspace_bytes) workspace_bytes;
  decltype(&kernels::cpu::conv2d_forward) forward;
  decltype(&kernels::cpu::conv2d_backward_data) backward_data;
  decltype(&kernels::cpu::conv2d_backward_filter) backward_filter;
};

inline ConvBackend conv_backend_for(Device device) {
#if GPUDL_WITH_CUDA
  if (device.is_cuda()) {
    return {&kernels::cuda::conv2d_workspace_bytes, &kernels::cuda::conv2d_forward,
            &kernels::cuda::conv2d_backward_data, &kernels::cuda::conv2d_backward_filter};
  }
#else
  if (device.is_cuda()) no_cuda_backend();
#endif
  return {&kernels::cpu::conv2d_workspace_bytes, &kernels::cpu::conv2d_forward, &kernels::cpu::conv2d_backward_data,
          &kernels::cpu::conv2d_backward_filter};
}

// Runs fn and puts the layer's name in front of what the kernels throw (they name the shapes).
template <class Fn>
void named_conv(const std::string& name, Fn fn) {
  try {
    fn();
  } catch (const OutOfMemoryError& e) {
    throw OutOfMemoryError(name + ": " + e.what());
  } catch (const CudaError& e) {
    throw CudaError(name + ": " + e.what());
  } catch (const ValueError& e) {
    throw ValueError(name + ": " + e.what());
  }
}

// Calls fn(backend, exec, workspace, workspace_bytes) for geometry g on `device`, with the
// layer's name in front of what the kernels throw.
template <class Fn>
void with_conv_backend(const std::string& name, Device device, const kernels::ConvGeometry& g,
                       const kernels::ConvOptions& o, Fn fn) {
  named_conv(name, [&] {
    const ConvBackend backend = conv_backend_for(device);
    Context& context = Context::get(device);
    const kernels::Exec exec = context.exec(true, true);
    const std::size_t bytes = backend.workspace_bytes(g, o, exec);
    fn(backend, exec, context.workspace(bytes), bytes);
  });
}

// y = conv(x, weight) + bias (bias may be undefined) for the geometry g.
inline void conv_forward(const std::string& name, const Tensor& y, const Tensor& x, const Tensor& weight,
                         const Tensor& bias, const kernels::ConvGeometry& g, const kernels::ConvOptions& o) {
  with_conv_backend(name, x.device(), g, o,
                    [&](const ConvBackend& backend, const kernels::Exec& exec, void* workspace, std::size_t bytes) {
                      backend.forward(y.data<float>(), x.data<float>(), weight.data<float>(),
                                      bias.defined() ? bias.data<float>() : nullptr, g, o, workspace, bytes, exec);
                    });
}

// dx = dL/dx (undefined: not wanted, not computed); weight_grad and bias_grad (may be undefined) accumulate.
inline void conv_backward(const std::string& name, const Tensor& dx, const Tensor& weight_grad,
                          const Tensor& bias_grad, const Tensor& dy, const Tensor& x, const Tensor& weight,
                          const kernels::ConvGeometry& g, const kernels::ConvOptions& o) {
  with_conv_backend(
      name, x.device(), g, o,
      [&](const ConvBackend& backend, const kernels::Exec& exec, void* workspace, std::size_t bytes) {
        if (dx.defined()) {
          backend.backward_data(dx.data<float>(), dy.data<float>(), weight.data<float>(), g, o, workspace, bytes, exec);
        }
        backend.backward_filter(weight_grad.data<float>(), bias_grad.defined() ? bias_grad.data<float>() : nullptr,
                                dy.data<float>(), x.data<float>(), g, o, workspace, bytes, exec);
      });
}

}  // namespace gpudl::detail
