// CUDA dropout; twin of kernels/cpu/dropout.cpp (identical masks).
#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/dispatch.h"
#include "gpudl/kernels/dropout.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

// One thread per block of four elements: one Philox call feeds four masks.
// `offset_at`, when given, holds the offset in device memory and overrides `offset`.
template <class T>
__global__ void dropout_forward_kernel(T* y, float* mask, const T* x, index_t n, float p, std::uint64_t seed,
                                       std::uint64_t offset, const std::int64_t* offset_at) {
  if (offset_at != nullptr) offset = static_cast<std::uint64_t>(*offset_at);
  const index_t blocks = (n + 3) / 4;
  for (index_t b = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; b < blocks;
       b += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const Philox4x32 r = philox_block(seed, offset, static_cast<std::uint64_t>(b));
    for (int j = 0; j < 4; ++j) {
      const index_t i = 4 * b + j;
      if (i < n) {
        const float m = dropout_scale(uniform01(r.v[j]), p);
        mask[i] = m;
        y[i] = store<T>(load(x[i]) * m);
      }
    }
  }
}

template <class T>
__global__ void dropout_backward_kernel(T* dx, const T* dy, const float* mask, index_t n) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    dx[i] = store<T>(load(dy[i]) * mask[i]);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void dropout_forward(void* y, float* mask, const void* x, DType type, index_t n, float p, std::uint64_t seed,
                     std::uint64_t offset, const Exec& exec) {
  kernels::detail::with_float_type(type, "dropout_forward", [&](auto tag) {
    using T = decltype(tag);
    if (n == 0) return;
    dropout_forward_kernel<T><<<detail::grid_for((n + 3) / 4), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(y), mask, static_cast<const T*>(x), n, p, seed, offset, nullptr);
  });
  GPUDL_CHECK_LAUNCH();
}

void dropout_forward_at(void* y, float* mask, const void* x, DType type, index_t n, float p, std::uint64_t seed,
                        const std::int64_t* offset, const Exec& exec) {
  kernels::detail::with_float_type(type, "dropout_forward_at", [&](auto tag) {
    using T = decltype(tag);
    if (n == 0) return;
    dropout_forward_kernel<T><<<detail::grid_for((n + 3) / 4), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(y), mask, static_cast<const T*>(x), n, p, seed, 0, offset);
  });
  GPUDL_CHECK_LAUNCH();
}

void dropout_backward(void* dx, const void* dy, const float* mask, DType type, index_t n, const Exec& exec) {
  kernels::detail::with_float_type(type, "dropout_backward", [&](auto tag) {
    using T = decltype(tag);
    if (n == 0) return;
    dropout_backward_kernel<T><<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(dx), static_cast<const T*>(dy), mask, n);
  });
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
