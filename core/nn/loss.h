// The nn facade for the fused loss kernels: cross-entropy and the element-wise losses: typed functions
// on Tensors that check dtype, device and shape, then run the kernel's CPU or CUDA twin chosen from
// the tensors' device.
// Conventions (all of core/nn/): outputs first, already shaped; "accumulates" adds into an output.
// Throws ValueError (undefined tensor, wrong dtype), DeviceError (tensors on different devices),
// ShapeError naming the function and shapes, and what the kernels throw (CudaError, OutOfMemoryError).
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/core/runtime/tensor.h"
#include "gpudl/kernels/loss.h"

namespace gpudl::nn {

using kernels::ElementLossKind;

// Cross-entropy of logits (rows, classes) against i64 labels (rows): loss_sum[0] and correct[0]
// accumulate loss_scale x the summed loss and the count of right argmaxes; grad gets grad_scale x
// dL/dlogits. Labels outside [0, classes) throw on the CPU (the CUDA kernel clamps).
void cross_entropy(const Tensor& loss_sum, const Tensor& correct, const Tensor& grad, const Tensor& logits,
                   const Tensor& labels, float label_smoothing, float loss_scale, float grad_scale);
// An element-wise loss of x against target (same shape), as cross_entropy.
void element_loss(const Tensor& loss_sum, const Tensor& correct, const Tensor& grad, const Tensor& x,
                  const Tensor& target, ElementLossKind kind, float margin, float loss_scale, float grad_scale);

}  // namespace gpudl::nn
