// The nn facade for max, average and global average pooling of NCHW images: typed functions on Tensors
// that check dtype, device and shape, then run the kernel's CPU or CUDA twin chosen from the tensors'
// device.
// Conventions (all of core/nn/): outputs first, already shaped; "accumulates" adds into an output.
// Throws ValueError (undefined tensor, wrong dtype), DeviceError (tensors on different devices),
// ShapeError naming the function and shapes, and what the kernels throw (CudaError, OutOfMemoryError).
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/core/runtime/tensor.h"
#include "gpudl/kernels/pool.h"

namespace gpudl::nn {

using kernels::PoolGeometry;

void max_pool_forward(const Tensor& y, const Tensor& argmax, const Tensor& x, const PoolGeometry& g);
void max_pool_backward(const Tensor& dx, const Tensor& dy, const Tensor& argmax, const PoolGeometry& g);
void avg_pool_forward(const Tensor& y, const Tensor& x, const PoolGeometry& g);
void avg_pool_backward(const Tensor& dx, const Tensor& dy, const PoolGeometry& g);
// x (n, c, h, w) -> y (n, c) and back.
void global_avg_pool_forward(const Tensor& y, const Tensor& x);
void global_avg_pool_backward(const Tensor& dx, const Tensor& dy);

}  // namespace gpudl::nn
