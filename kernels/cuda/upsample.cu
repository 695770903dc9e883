// CUDA upsampling, one thread per output element (forward) or input element (backward, a gather);
// twin of kernels/cpu/upsample.cpp through the same math in upsample.h.
#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/dispatch.h"
#include "gpudl/kernels/upsample.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

// Consecutive threads take consecutive output columns, so a warp reads neighbouring inputs.
template <class T>
__global__ void upsample_forward_kernel(T* y, const T* x, UpsampleGeometry g) {
  const index_t out_w = g.out_w(), out_plane = g.out_h() * out_w, total = g.n * g.c * out_plane;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t p = i / out_plane, r = i % out_plane;
    y[i] = store<T>(upsample_value(x + p * g.h * g.w, g, r / out_w, r % out_w));
  }
}

template <class T>
__global__ void upsample_backward_kernel(T* dx, const T* dy, UpsampleGeometry g) {
  const index_t in_plane = g.h * g.w, total = g.n * g.c * in_plane, out_plane = g.out_h() * g.out_w();
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t p = i / in_plane, r = i % in_plane;
    dx[i] = store<T>(upsample_input_grad(dy + p * out_plane, g, r / g.w, r % g.w));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void upsample_forward(void* y, const void* x, DType type, const UpsampleGeometry& geom, const Exec& exec) {
  kernels::detail::with_float_type(type, "upsample_forward", [&](auto tag) {
    using T = decltype(tag);
    const index_t total = geom.n * geom.c * geom.out_h() * geom.out_w();
    if (total == 0) return;
    upsample_forward_kernel<T><<<detail::grid_for(total), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(y), static_cast<const T*>(x), geom);
  });
  GPUDL_CHECK_LAUNCH();
}

void upsample_backward(void* dx, const void* dy, DType type, const UpsampleGeometry& geom, const Exec& exec) {
  kernels::detail::with_float_type(type, "upsample_backward", [&](auto tag) {
    using T = decltype(tag);
    const index_t total = geom.n * geom.c * geom.h * geom.w;
    if (total == 0) return;
    upsample_backward_kernel<T><<<detail::grid_for(total), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(dx), static_cast<const T*>(dy), geom);
  });
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
