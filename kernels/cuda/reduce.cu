// CUDA axis reductions (sum, mean, max, argmax); twins of kernels/cpu/reduce.cpp.
#include <cmath>

#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/dispatch.h"
#include "gpudl/kernels/reduce.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

struct SumAcc {
  float v;
  __device__ static SumAcc identity() { return {0.0f}; }
  __device__ static SumAcc of(float x, index_t) { return {x}; }
  __device__ static SumAcc combine(SumAcc a, SumAcc b) { return {a.v + b.v}; }
  __device__ SumAcc shfl_down(unsigned offset) const { return {__shfl_down_sync(0xffffffffu, v, offset)}; }
};

struct ArgMaxAcc {
  float v;
  index_t i;
  // -inf with the largest index loses to any real element, including -inf itself.
  __device__ static ArgMaxAcc identity() { return {-INFINITY, INT64_MAX}; }
  __device__ static ArgMaxAcc of(float x, index_t i) { return {x, i}; }
  __device__ static ArgMaxAcc combine(ArgMaxAcc a, ArgMaxAcc b) { return argmax_prefers(b.v, b.i, a.v, a.i) ? b : a; }
  __device__ ArgMaxAcc shfl_down(unsigned offset) const {
    return {__shfl_down_sync(0xffffffffu, v, offset), __shfl_down_sync(0xffffffffu, i, offset)};
  }
};

enum class Out { kSum, kMean, kMax, kArgmax };

template <Out K, class Acc, class T>
__device__ void write(T* out, index_t at, Acc acc, index_t axis_len) {
  if constexpr (K == Out::kSum) {
    out[at] = acc.v;
  } else if constexpr (K == Out::kMean) {
    out[at] = acc.v / static_cast<float>(axis_len);
  } else if constexpr (K == Out::kMax) {
    out[at] = acc.v;
  } else {
    out[at] = acc.i;
  }
}

// inner == 1: each block reduces whole rows of length axis_len (coalesced along the row).
template <Out K, class Acc, class T>
__global__ void reduce_rows_kernel(T* out, const float* in, index_t rows, index_t axis_len) {
  __shared__ Acc warp_results[32];
  for (index_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* x = in + row * axis_len;
    Acc acc = Acc::identity();
    for (index_t a = threadIdx.x; a < axis_len; a += blockDim.x) acc = Acc::combine(acc, Acc::of(x[a], a));
    for (unsigned offset = 16; offset > 0; offset /= 2) acc = Acc::combine(acc, acc.shfl_down(offset));
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) warp_results[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      const unsigned warps = blockDim.x / 32;
      acc = lane < warps ? warp_results[lane] : Acc::identity();
      for (unsigned offset = 16; offset > 0; offset /= 2) acc = Acc::combine(acc, acc.shfl_down(offset));
      if (lane == 0) write<K>(out, row, acc, axis_len);
    }
    __syncthreads();  // warp_results is reused by the next row
  }
}

// inner > 1: one thread per output element walks the axis; neighbouring threads read
// neighbouring addresses, so the loads coalesce.
template <Out K, class Acc, class T>
__global__ void reduce_cols_kernel(T* out, const float* in, index_t outer, index_t axis_len, index_t inner) {
  const index_t total = outer * inner;
  for (index_t idx = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t o = idx / inner, i = idx % inner;
    const float* x = in + o * axis_len * inner + i;
    Acc acc = Acc::identity();
    for (index_t a = 0; a < axis_len; ++a) acc = Acc::combine(acc, Acc::of(x[a * inner], a));
    write<K>(out, idx, acc, axis_len);
  }
}

// One thread per column walks the rows (coalesced across columns) and adds into out.
template <class T>
__global__ void column_sum_add_kernel(float* out, const T* x, index_t rows, index_t cols) {
  for (index_t c = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; c < cols;
       c += static_cast<index_t>(gridDim.x) * blockDim.x) {
    float acc = 0.0f;
    for (index_t r = 0; r < rows; ++r) acc += load(x[r * cols + c]);
    out[c] += acc;
  }
}

// ---------------------------------------------------------------------------------------------
// launchers

template <Out K, class Acc, class T>
void launch(T* out, const float* in, index_t outer, index_t axis_len, index_t inner, const Exec& exec) {
  if (outer == 0 || inner == 0) return;
  if (axis_len < 1) throw ValueError("reduce: axis length must be at least 1, got " + std::to_string(axis_len));
  const cudaStream_t stream = detail::stream_of(exec);
  if (inner == 1) {
    reduce_rows_kernel<K, Acc><<<detail::grid_for(outer * detail::kBlock), detail::kBlock, 0, stream>>>(
        out, in, outer, axis_len);
  } else {
    reduce_cols_kernel<K, Acc><<<detail::grid_for(outer * inner), detail::kBlock, 0, stream>>>(out, in, outer,
                                                                                                axis_len, inner);
  }
  GPUDL_CHECK_LAUNCH();
}

}  // namespace

void reduce_sum(float* out, const float* in, index_t outer, index_t axis_len, index_t inner, const Exec& exec) {
  launch<Out::kSum, SumAcc>(out, in, outer, axis_len, inner, exec);
}
void reduce_mean(float* out, const float* in, index_t outer, index_t axis_len, index_t inner, const Exec& exec) {
  launch<Out::kMean, SumAcc>(out, in, outer, axis_len, inner, exec);
}
void reduce_max(float* out, const float* in, index_t outer, index_t axis_len, index_t inner, const Exec& exec) {
  launch<Out::kMax, ArgMaxAcc>(out, in, outer, axis_len, inner, exec);
}
void reduce_argmax(std::int64_t* out, const float* in, index_t outer, index_t axis_len, index_t inner,
                   const Exec& exec) {
  launch<Out::kArgmax, ArgMaxAcc>(out, in, outer, axis_len, inner, exec);
}

void column_sum_add(float* out, const void* x, DType type, index_t rows, index_t cols, const Exec& exec) {
  kernels::detail::with_float_type(type, "column_sum_add", [&](auto tag) {
    using T = decltype(tag);
    if (cols == 0) return;
    column_sum_add_kernel<T><<<detail::grid_for(cols), detail::kBlock, 0, detail::stream_of(exec)>>>(
        out, static_cast<const T*>(x), rows, cols);
  });
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
