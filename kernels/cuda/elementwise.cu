// CUDA element-wise kernels (fill, copy, cast, arithmetic); twins of kernels/cpu/elementwise.cpp.
#include "gpudl/kernels/dispatch.h"
#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/elementwise.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

__global__ void count_up_kernel(std::int64_t* counter, std::int64_t by) { *counter += by; }

template <class T>
__global__ void fill_kernel(T* out, T value, index_t n) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    out[i] = value;
  }
}

template <class To, class From>
__global__ void cast_kernel(To* out, const From* in, index_t n) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    out[i] = convert<To>(in[i]);
  }
}

template <class T, class Op>
__global__ void binary_kernel(T* out, const T* a, const T* b, index_t n, Op op) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    out[i] = store<T>(op(load(a[i]), load(b[i])));
  }
}

__global__ void scale_kernel(float* out, const float* in, float alpha, index_t n) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    out[i] = alpha * in[i];
  }
}

__global__ void axpy_kernel(float* y, float alpha, const float* x, index_t n) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    y[i] += alpha * x[i];
  }
}

template <class T>
__global__ void add_row_vector_kernel(T* y, const float* v, index_t rows, index_t cols) {
  const index_t n = rows * cols;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    y[i] = store<T>(load(y[i]) + v[i % cols]);
  }
}

// ---------------------------------------------------------------------------------------------
// launchers

template <class Op>
void launch_binary(void* out, const void* a, const void* b, DType type, index_t n, const Exec& exec, Op op) {
  kernels::detail::with_float_type(type, "element-wise op", [&](auto tag) {
    using T = decltype(tag);
    if (n == 0) return;
    binary_kernel<T><<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), n, op);
  });
  GPUDL_CHECK_LAUNCH();
}

}  // namespace

void fill(void* out, DType type, double value, index_t n, const Exec& exec) {
  if (n == 0) return;
  kernels::detail::visit_dtype(type, [&](auto tag) {
    using T = decltype(tag);
    fill_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(static_cast<T*>(out),
                                                                                       convert<T>(value), n);
  });
  GPUDL_CHECK_LAUNCH();
}

void count_up(std::int64_t* counter, std::int64_t by, const Exec& exec) {
  count_up_kernel<<<1, 1, 0, detail::stream_of(exec)>>>(counter, by);
  GPUDL_CHECK_LAUNCH();
}

void copy(void* out, const void* in, std::size_t bytes, const Exec& exec) {
  if (bytes == 0) return;
  GPUDL_CHECK_CUDA(cudaMemcpyAsync(out, in, bytes, cudaMemcpyDeviceToDevice, detail::stream_of(exec)));
}

void cast(void* out, DType out_type, const void* in, DType in_type, index_t n, const Exec& exec) {
  if (n == 0) return;
  kernels::detail::visit_dtype(out_type, [&](auto out_tag) {
    kernels::detail::visit_dtype(in_type, [&](auto in_tag) {
      using To = decltype(out_tag);
      using From = decltype(in_tag);
      cast_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(
          static_cast<To*>(out), static_cast<const From*>(in), n);
    });
  });
  GPUDL_CHECK_LAUNCH();
}

void add(void* out, const void* a, const void* b, DType type, index_t n, const Exec& exec) {
  launch_binary(out, a, b, type, n, exec, AddOp{});
}
void sub(void* out, const void* a, const void* b, DType type, index_t n, const Exec& exec) {
  launch_binary(out, a, b, type, n, exec, SubOp{});
}
void mul(void* out, const void* a, const void* b, DType type, index_t n, const Exec& exec) {
  launch_binary(out, a, b, type, n, exec, MulOp{});
}
void div(void* out, const void* a, const void* b, DType type, index_t n, const Exec& exec) {
  launch_binary(out, a, b, type, n, exec, DivOp{});
}

void scale(float* out, const float* in, float alpha, index_t n, const Exec& exec) {
  if (n == 0) return;
  scale_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(out, in, alpha, n);
  GPUDL_CHECK_LAUNCH();
}

void axpy(float* y, float alpha, const float* x, index_t n, const Exec& exec) {
  if (n == 0) return;
  axpy_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(y, alpha, x, n);
  GPUDL_CHECK_LAUNCH();
}

void add_row_vector(void* y, DType type, const float* v, index_t rows, index_t cols, const Exec& exec) {
  kernels::detail::with_float_type(type, "add_row_vector", [&](auto tag) {
    using T = decltype(tag);
    if (rows == 0 || cols == 0) return;
    add_row_vector_kernel<T><<<detail::grid_for(rows * cols), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(y), v, rows, cols);
  });
  GPUDL_CHECK_LAUNCH();
}

void copy_2d(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t row_bytes,
             std::size_t rows, const Exec& exec) {
  if (rows == 0 || row_bytes == 0) return;
  GPUDL_CHECK_CUDA(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyDeviceToDevice,
                                     detail::stream_of(exec)));
}

}  // namespace gpudl::kernels::cuda
