// CUDA activation kernels; twins of kernels/cpu/activation.cpp.
#include "gpudl/kernels/activation.h"
#include "gpudl/kernels/cuda/launch.cuh"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

__global__ void activation_forward_kernel(float* y, const float* x, index_t n, Activation kind, float alpha) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    y[i] = activate(kind, x[i], alpha);
  }
}

__global__ void activation_backward_kernel(float* dx, const float* dy, const float* x, const float* y, index_t n,
                                           Activation kind, float alpha) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    dx[i] = activate_grad(kind, dy[i], x[i], y[i], alpha);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void activation_forward(float* y, const float* x, index_t n, Activation kind, float alpha, const Exec& exec) {
  if (n == 0) return;
  activation_forward_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(y, x, n, kind, alpha);
  GPUDL_CHECK_LAUNCH();
}

void activation_backward(float* dx, const float* dy, const float* x, const float* y, index_t n, Activation kind,
                         float alpha, const Exec& exec) {
  if (n == 0) return;
  activation_backward_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(dx, dy, x, y, n,
                                                                                                 kind, alpha);
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
