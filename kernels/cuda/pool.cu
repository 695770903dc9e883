// CUDA pooling, one thread per output element (forward, and max-pool backward when windows do
// not overlap) or input element (other backward passes); twins of kernels/cpu/pool.cpp through
// the same window math in pool.h.
#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/dispatch.h"
#include "gpudl/kernels/pool.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

// Consecutive threads take consecutive output columns, so the window reads of a warp fall on
// neighbouring input columns and coalesce.
template <class T>
__global__ void max_pool_forward_kernel(T* y, std::int32_t* argmax, const T* x, PoolGeometry g) {
  const index_t out_h = g.out_h(), out_w = g.out_w();
  const index_t out_plane = out_h * out_w, total = g.n * g.c * out_plane;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t p = i / out_plane, r = i % out_plane;
    float value = 0.0f;
    argmax[i] = max_pool_window(&value, x + p * g.h * g.w, g, r / out_w, r % out_w);
    y[i] = store<T>(value);
  }
}

// Disjoint windows (stride >= kernel on both axes) give each input at most one window, so one
// thread per window can store straight to its winner: no atomics, no race, and no search of
// the covering windows. dx must be zeroed first for the inputs no window picked. Adding dy to
// 0.0f, as the CPU twin's zeroed sum does, turns a -0 gradient into +0 so the bits still match.
template <class T>
__global__ void max_pool_backward_scatter_kernel(T* dx, const T* dy, const std::int32_t* argmax, PoolGeometry g) {
  const index_t in_plane = g.h * g.w, out_plane = g.out_h() * g.out_w(), total = g.n * g.c * out_plane;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    dx[(i / out_plane) * in_plane + argmax[i]] = store<T>(0.0f + load(dy[i]));
  }
}

// Overlapping windows (stride < kernel) can share a winner, so a scatter would need atomic
// adds whose order, and so whose rounding, varies from run to run. Instead one thread per input
// element gathers from the windows covering it: no atomics, and the terms add in the same order
// as on the CPU, so the result repeats bit for bit.
template <class T>
__global__ void max_pool_backward_kernel(T* dx, const T* dy, const std::int32_t* argmax, PoolGeometry g) {
  const index_t in_plane = g.h * g.w, out_plane = g.out_h() * g.out_w(), total = g.n * g.c * in_plane;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t p = i / in_plane, r = i % in_plane;
    dx[i] = store<T>(max_pool_input_grad(dy + p * out_plane, argmax + p * out_plane, g, r / g.w, r % g.w));
  }
}

template <class T>
__global__ void avg_pool_forward_kernel(T* y, const T* x, PoolGeometry g) {
  const index_t out_h = g.out_h(), out_w = g.out_w();
  const index_t out_plane = out_h * out_w, total = g.n * g.c * out_plane;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t p = i / out_plane, r = i % out_plane;
    y[i] = store<T>(avg_pool_window(x + p * g.h * g.w, g, r / out_w, r % out_w));
  }
}

template <class T>
__global__ void avg_pool_backward_kernel(T* dx, const T* dy, PoolGeometry g) {
  const index_t in_plane = g.h * g.w, out_plane = g.out_h() * g.out_w(), total = g.n * g.c * in_plane;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t p = i / in_plane, r = i % in_plane;
    dx[i] = store<T>(avg_pool_input_grad(dy + p * out_plane, g, r / g.w, r % g.w));
  }
}

// One thread per plane, summing in the CPU's order: the planes a global pool sees are small
// (4x4 to 8x8 in CIFAR ResNets), so a block reduction per plane would buy little and lose the
// bit-for-bit agreement.
template <class T>
__global__ void global_avg_pool_forward_kernel(T* y, const T* x, index_t planes, index_t hw) {
  for (index_t p = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; p < planes;
       p += static_cast<index_t>(gridDim.x) * blockDim.x) {
    y[p] = store<T>(plane_mean(x + p * hw, hw));
  }
}

template <class T>
__global__ void global_avg_pool_backward_kernel(T* dx, const T* dy, index_t planes, index_t hw) {
  const index_t total = planes * hw;
  const float count = static_cast<float>(hw);
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    dx[i] = store<T>(load(dy[i / hw]) / count);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void max_pool_forward(void* y, std::int32_t* argmax, const void* x, DType type, const PoolGeometry& geom,
                      const Exec& exec) {
  kernels::detail::with_float_type(type, "max_pool_forward", [&](auto tag) {
    using T = decltype(tag);
    const index_t total = geom.n * geom.c * geom.out_h() * geom.out_w();
    if (total == 0) return;
    max_pool_forward_kernel<T><<<detail::grid_for(total), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(y), argmax, static_cast<const T*>(x), geom);
  });
  GPUDL_CHECK_LAUNCH();
}

void max_pool_backward(void* dx, const void* dy, const std::int32_t* argmax, DType type, const PoolGeometry& geom,
                       const Exec& exec) {
  kernels::detail::with_float_type(type, "max_pool_backward", [&](auto tag) {
    using T = decltype(tag);
    const index_t total = geom.n * geom.c * geom.h * geom.w;
    if (total == 0) return;
    if (geom.stride_h >= geom.kernel_h && geom.stride_w >= geom.kernel_w) {
      // All-zero bytes are +0 in f32, bf16 and f16 alike.
      GPUDL_CHECK_CUDA(cudaMemsetAsync(dx, 0, static_cast<std::size_t>(total) * sizeof(T), detail::stream_of(exec)));
      const index_t windows = geom.n * geom.c * geom.out_h() * geom.out_w();
      max_pool_backward_scatter_kernel<T><<<detail::grid_for(windows), detail::kBlock, 0, detail::stream_of(exec)>>>(
          static_cast<T*>(dx), static_cast<const T*>(dy), argmax, geom);
      return;
    }
    max_pool_backward_kernel<T><<<detail::grid_for(total), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(dx), static_cast<const T*>(dy), argmax, geom);
  });
  GPUDL_CHECK_LAUNCH();
}

void avg_pool_forward(void* y, const void* x, DType type, const PoolGeometry& geom, const Exec& exec) {
  kernels::detail::with_float_type(type, "avg_pool_forward", [&](auto tag) {
    using T = decltype(tag);
    const index_t total = geom.n * geom.c * geom.out_h() * geom.out_w();
    if (total == 0) return;
    avg_pool_forward_kernel<T><<<detail::grid_for(total), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(y), static_cast<const T*>(x), geom);
  });
  GPUDL_CHECK_LAUNCH();
}

void avg_pool_backward(void* dx, const void* dy, DType type, const PoolGeometry& geom, const Exec& exec) {
  kernels::detail::with_float_type(type, "avg_pool_backward", [&](auto tag) {
    using T = decltype(tag);
    const index_t total = geom.n * geom.c * geom.h * geom.w;
    if (total == 0) return;
    avg_pool_backward_kernel<T><<<detail::grid_for(total), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(dx), static_cast<const T*>(dy), geom);
  });
  GPUDL_CHECK_LAUNCH();
}

void global_avg_pool_forward(void* y, const void* x, DType type, index_t n, index_t c, index_t hw,
                             const Exec& exec) {
  kernels::detail::with_float_type(type, "global_avg_pool_forward", [&](auto tag) {
    using T = decltype(tag);
    if (n * c == 0) return;
    global_avg_pool_forward_kernel<T><<<detail::grid_for(n * c), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(y), static_cast<const T*>(x), n * c, hw);
  });
  GPUDL_CHECK_LAUNCH();
}

void global_avg_pool_backward(void* dx, const void* dy, DType type, index_t n, index_t c, index_t hw,
                              const Exec& exec) {
  kernels::detail::with_float_type(type, "global_avg_pool_backward", [&](auto tag) {
    using T = decltype(tag);
    if (n * c * hw == 0) return;
    global_avg_pool_backward_kernel<T><<<detail::grid_for(n * c * hw), detail::kBlock, 0,
                                         detail::stream_of(exec)>>>(static_cast<T*>(dx), static_cast<const T*>(dy),
                                                                     n * c, hw);
  });
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
