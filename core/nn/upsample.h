// The nn facade for upsampling NCHW images by an integer factor (nearest, bilinear): typed functions
// on Tensors that check dtype, device and shape, then run the kernel's CPU or CUDA twin chosen from
// the tensors' device.
// Conventions (all of core/nn/): outputs first, already shaped; "accumulates" adds into an output.
// Throws ValueError (undefined tensor, wrong dtype, invalid geometry), DeviceError (tensors on
// different devices), ShapeError naming the function and shapes, and what the kernels throw (CudaError).
#pragma once

#include "gpudl/core/runtime/tensor.h"
#include "gpudl/kernels/upsample.h"

namespace gpudl::nn {

using kernels::UpsampleGeometry;
using kernels::UpsampleMode;

// x (n, c, h, w) -> y (n, c, h scale, w scale).
void upsample_forward(const Tensor& y, const Tensor& x, const UpsampleGeometry& g);
// dx (n, c, h, w, overwritten) from dy (n, c, h scale, w scale).
void upsample_backward(const Tensor& dx, const Tensor& dy, const UpsampleGeometry& g);

}  // namespace gpudl::nn
