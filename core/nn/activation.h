// The nn facade for element-wise activations and softmax/log-softmax over the last axis: typed
// functions on Tensors that check dtype, device and shape, then run the kernel's CPU or CUDA twin
// chosen from the tensors' device.
// Conventions (all of core/nn/): outputs first, already shaped; "accumulates" adds into an output.
// Throws ValueError (undefined tensor, wrong dtype), DeviceError (tensors on different devices),
// ShapeError naming the function and shapes, and what the kernels throw (CudaError, OutOfMemoryError).
// bf16/fp16 tensors are accepted wherever f32 activations are (not parameters, statistics or
// gradients of parameters): FP32 arithmetic inside, each stored result rounded once.
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/core/runtime/tensor.h"
#include "gpudl/kernels/activation.h"

namespace gpudl::nn {

using kernels::Activation;
// "ReLU", "GELU(tanh)": each kind's layer name.
using kernels::activation_name;
// How many activation kinds there are, for tables and tests that cover each of them.
inline constexpr int kActivationCount = kernels::kActivationCount;

// y = f(x) (same shape); alpha is LeakyReLU's slope or ELU's scale.
void activation_forward(const Tensor& y, const Tensor& x, Activation kind, float alpha);
// dx = dy f'(x) from the x and y of the forward (all one shape).
void activation_backward(const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& y, Activation kind,
                         float alpha);
// Softmax (or log-softmax) over the last axis.
void softmax_forward(const Tensor& y, const Tensor& x, bool log);
void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log);

}  // namespace gpudl::nn
