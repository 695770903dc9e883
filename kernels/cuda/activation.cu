// CUDA activation kernels; twins of kernels/cpu/activation.cpp.
#include "gpudl/kernels/activation.h"
#include "gpudl/kernels/dispatch.h"
#include "gpudl/kernels/cuda/launch.cuh"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels


template <class T>
__global__ void activation_forward_kernel(T* y, const T* x, index_t n, Activation kind, float alpha) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    y[i] = store<T>(activate(kind, load(x[i]), alpha));
  }
}

template <class T>
__global__ void activation_backward_kernel(T* dx, const T* dy, const T* x, const T* y, index_t n, Activation kind,
                                           float alpha) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    dx[i] = store<T>(activate_grad(kind, load(dy[i]), load(x[i]), load(y[i]), alpha));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void activation_forward(void* y, const void* x, DType type, index_t n, Activation kind, float alpha,
                        const Exec& exec) {
  kernels::detail::with_float_type(type, "activation", [&](auto tag) {
    using T = decltype(tag);
    if (n == 0) return;
    activation_forward_kernel<T><<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(y), static_cast<const T*>(x), n, kind, alpha);
  });
  GPUDL_CHECK_LAUNCH();
}

void activation_backward(void* dx, const void* dy, const void* x, const void* y, DType type, index_t n,
                         Activation kind, float alpha, const Exec& exec) {
  kernels::detail::with_float_type(type, "activation", [&](auto tag) {
    using T = decltype(tag);
    if (n == 0) return;
    activation_backward_kernel<T><<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(dx), static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(y), n, kind,
        alpha);
  });
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
