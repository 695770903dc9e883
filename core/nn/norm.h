// The nn facade for batch normalisation over (N, C, ...): typed functions on Tensors that check dtype,
// device and shape, then run the kernel's CPU or CUDA twin chosen from the tensors' device.
// Conventions (all of core/nn/): outputs first, already shaped; "accumulates" adds into an output.
// Throws ValueError (undefined tensor, wrong dtype), DeviceError (tensors on different devices),
// ShapeError naming the function and shapes, and what the kernels throw (CudaError, OutOfMemoryError).
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/core/runtime/tensor.h"

namespace gpudl::nn {

// Floats of scratch the CUDA kernels need for these sizes (0 on the CPU).
std::int64_t batchnorm_scratch_floats(Device device, std::int64_t n, std::int64_t c, std::int64_t inner);
// Batch statistics: y, save_mean, save_invstd (c) written; running_mean/var (c) updated.
// x is (n, c, ...); scratch holds batchnorm_scratch_floats (may be undefined on the CPU).
// Fused (one pass): y = ReLU(bn(x) + residual) with `relu`, the ReLU and the residual (x's
// shape; undefined for none) each optional.
void batchnorm_forward_train(const Tensor& y, const Tensor& save_mean, const Tensor& save_invstd,
                             const Tensor& running_mean, const Tensor& running_var, const Tensor& x,
                             const Tensor& gamma, const Tensor& beta, float eps, float momentum, const Tensor& scratch,
                             const Tensor& residual = Tensor(), bool relu = false);
void batchnorm_forward_eval(const Tensor& y, const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                            const Tensor& gamma, const Tensor& beta, float eps, const Tensor& residual = Tensor(),
                            bool relu = false);
// dx written; dgamma, dbeta accumulate. Of the fused forward: `relu` needs its output y, and
// dresidual (undefined for none) receives the residual's gradient.
void batchnorm_backward(const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dy,
                        const Tensor& x, const Tensor& save_mean, const Tensor& save_invstd, const Tensor& gamma,
                        const Tensor& scratch, const Tensor& y = Tensor(), const Tensor& dresidual = Tensor(),
                        bool relu = false);

}  // namespace gpudl::nn
