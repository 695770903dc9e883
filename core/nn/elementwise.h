// The nn facade for bias broadcasts and sums, column copies and dropout: typed functions on Tensors
// that check dtype, device and shape, then run the kernel's CPU or CUDA twin chosen from the tensors'
// device.
// Conventions (all of core/nn/): outputs first, already shaped; "accumulates" adds into an output.
// Throws ValueError (undefined tensor, wrong dtype), DeviceError (tensors on different devices),
// ShapeError naming the function and shapes, and what the kernels throw (CudaError, OutOfMemoryError).
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/core/runtime/tensor.h"

namespace gpudl::nn {

// y (rows, cols) += bias (cols) on every row; y may have more axes, the last being cols.
void add_bias(const Tensor& y, const Tensor& bias);
// bias_grad (cols) += the column sums of dy (rows, cols) (any leading axes count as rows).
void accumulate_bias_grad(const Tensor& bias_grad, const Tensor& dy);
// Copies columns [src_col, src_col + width) of src, seen as (rows, src.numel() / rows), into
// columns [dst_col, dst_col + width) of dst, seen as (rows, dst.numel() / rows). Both of one dtype (any).
void copy_columns(const Tensor& dst, std::int64_t dst_col, const Tensor& src, std::int64_t src_col,
                  std::int64_t width, std::int64_t rows);
// y = x * mask, mask = 0 or 1 / (1 - p) from Philox(seed, offset): the same on both devices.
void dropout_forward(const Tensor& y, const Tensor& mask, const Tensor& x, float p, std::uint64_t seed,
                     std::uint64_t offset);
// The same with the offset in `offset` (i64, one value, on x's device), read when the kernel runs.
void dropout_forward_at(const Tensor& y, const Tensor& mask, const Tensor& x, float p, std::uint64_t seed,
                        const Tensor& offset);
// dx = dy * mask (the mask of the forward, f32); dx and dy of one type, dx may be dy.
void dropout_backward(const Tensor& dx, const Tensor& dy, const Tensor& mask);

}  // namespace gpudl::nn
