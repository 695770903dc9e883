// Activation layers and Softmax/LogSoftmax over the last axis.
#include "gpudl/layers/activation.h"

#include "gpudl/core/dispatch.h"
#include "gpudl/kernels/softmax.h"

namespace gpudl {

namespace {
void check_gradient(const Tensor& grad, const Tensor& saved, const std::string& layer) {
  if (!saved.defined()) throw Error(layer + ": backward called before forward");
  if (grad.shape() != saved.shape()) {
    throw ShapeError(layer + ": gradient " + grad.shape().str() + " does not match output " + saved.shape().str());
  }
}
}  // namespace

ActivationLayer::ActivationLayer(kernels::Activation kind, float alpha, std::string name)
    : kind_(kind), alpha_(alpha), name_(std::move(name)) {}

Tensor ActivationLayer::forward(const Tensor& x) {
  x.check_dtype(DType::kF32, name_.c_str());
  Tensor y = Tensor::empty(x.shape(), DType::kF32, x.device());
  GPUDL_DISPATCH(x.device(), false, activation_forward, y.data<float>(), x.data<float>(), x.numel(), kind_, alpha_);
  input_ = x;
  output_ = y;
  return y;
}

Tensor ActivationLayer::backward(const Tensor& grad_output) {
  check_gradient(grad_output, output_, name_);
  Tensor dx = Tensor::empty(grad_output.shape(), DType::kF32, grad_output.device());
  GPUDL_DISPATCH(dx.device(), false, activation_backward, dx.data<float>(), grad_output.data<float>(),
                 input_.data<float>(), output_.data<float>(), dx.numel(), kind_, alpha_);
  input_ = output_ = Tensor();
  return dx;
}

Tensor Softmax::forward(const Tensor& x) {
  x.check_dtype(DType::kF32, describe().c_str());
  if (x.ndim() == 0) throw ShapeError(describe() + ": expected at least one axis, got a scalar");
  const std::int64_t cols = x.dim(x.ndim() - 1), rows = cols == 0 ? 0 : x.numel() / cols;
  Tensor y = Tensor::empty(x.shape(), DType::kF32, x.device());
  GPUDL_DISPATCH(x.device(), false, softmax_forward, y.data<float>(), x.data<float>(), rows, cols, log_);
  output_ = y;
  return y;
}

Tensor Softmax::backward(const Tensor& grad_output) {
  check_gradient(grad_output, output_, describe());
  const std::int64_t cols = output_.dim(output_.ndim() - 1), rows = cols == 0 ? 0 : output_.numel() / cols;
  Tensor dx = Tensor::empty(grad_output.shape(), DType::kF32, grad_output.device());
  GPUDL_DISPATCH(dx.device(), false, softmax_backward, dx.data<float>(), grad_output.data<float>(),
                 output_.data<float>(), rows, cols, log_);
  output_ = Tensor();
  return dx;
}

}  // namespace gpudl
