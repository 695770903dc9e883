// The nn facade for layer normalisation over the last axis: typed functions on Tensors that
// check dtype, device and shape, then run the kernel's CPU or CUDA twin chosen from the tensors'
// device. Conventions as in the rest of core/nn/.
#pragma once

#include "gpudl/core/runtime/tensor.h"

namespace gpudl::nn {

// x (..., cols) normalised per row: y (x's shape) written, mean and rstd (rows) saved. gamma and
// beta (cols) may both be undefined (no affine transform).
void layer_norm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& gamma,
                        const Tensor& beta, float eps);
// dx written; dgamma and dbeta (cols) accumulate, both undefined without an affine transform.
void layer_norm_backward(const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& gamma);

}  // namespace gpudl::nn
