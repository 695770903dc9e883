// The nn facade for 2-D convolution of NCHW images (weight (k, c / groups, r, s)): typed functions on
// Tensors that check dtype, device and shape, then run the kernel's CPU or CUDA twin chosen from the
// tensors' device.
// Conventions (all of core/nn/): outputs first, already shaped; "accumulates" adds into an output.
// Throws ValueError (undefined tensor, wrong dtype), DeviceError (tensors on different devices),
// ShapeError naming the function and shapes, and what the kernels throw (CudaError, OutOfMemoryError).
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/core/runtime/tensor.h"
#include "gpudl/kernels/conv.h"

namespace gpudl::nn {

using kernels::ConvGeometry;
using kernels::ConvOptions;

// y = conv(x, weight) + bias (bias may be undefined) for the geometry g.
void conv2d_forward(const std::string& who, const Tensor& y, const Tensor& x, const Tensor& weight,
                    const Tensor& bias, const ConvGeometry& g, const ConvOptions& o);
// dx = dL/dx (undefined: not wanted, not computed); weight_grad and bias_grad (may be undefined) accumulate.
void conv2d_backward(const std::string& who, const Tensor& dx, const Tensor& weight_grad, const Tensor& bias_grad,
                     const Tensor& dy, const Tensor& x, const Tensor& weight, const ConvGeometry& g,
                     const ConvOptions& o);

// Transposed convolution (PyTorch's ConvTranspose2d), the adjoint of g's convolution: x (n, k, out_h, out_w)
// to y (n, c, h, w), weight (k, c / groups, r, s), bias (c) (may be undefined).
void conv_transpose2d_forward(const std::string& who, const Tensor& y, const Tensor& x, const Tensor& weight,
                              const Tensor& bias, const ConvGeometry& g, const ConvOptions& o);
// Its backward: dx = g's convolution of dy (undefined: not computed); weight_grad accumulates g's
// filter gradient with the roles of x and dy swapped, bias_grad (may be undefined) the channel sums of dy.
void conv_transpose2d_backward(const std::string& who, const Tensor& dx, const Tensor& weight_grad,
                               const Tensor& bias_grad, const Tensor& dy, const Tensor& x, const Tensor& weight,
                               const ConvGeometry& g, const ConvOptions& o);

}  // namespace gpudl::nn
