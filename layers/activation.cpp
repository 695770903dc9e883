// Activation layers and Softmax/LogSoftmax over the last axis.
#include "gpudl/layers/activation.h"

namespace gpudl {

ActivationLayer::ActivationLayer(nn::Activation kind, float alpha, std::string name)
    : kind_(kind), alpha_(alpha), name_(std::move(name)) {}

Tensor ActivationLayer::forward(const Tensor& x) {
  require_float(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  nn::activation_forward(y, x, kind_, alpha_);
  input_ = training_ ? x : Tensor();
  output_ = training_ ? y : Tensor();
  return y;
}

Tensor ActivationLayer::backward(const Tensor& grad_output) {
  require_forward(output_.defined());
  require_grad_shape(grad_output, output_.shape());
  Tensor dx = Tensor::empty(grad_output.shape(), input_.dtype(), grad_output.device());
  nn::activation_backward(dx, grad_output, input_, output_, kind_, alpha_);
  input_ = output_ = Tensor();
  return dx;
}

Tensor Softmax::forward(const Tensor& x) {
  require_float(x);
  if (x.ndim() == 0) throw ShapeError(describe() + ": expected at least one axis, got a scalar");
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  nn::softmax_forward(y, x, log_);
  output_ = training_ ? y : Tensor();
  return y;
}

Tensor Softmax::backward(const Tensor& grad_output) {
  require_forward(output_.defined());
  require_grad_shape(grad_output, output_.shape());
  Tensor dx = Tensor::empty(grad_output.shape(), output_.dtype(), grad_output.device());
  nn::softmax_backward(dx, grad_output, output_, log_);
  output_ = Tensor();
  return dx;
}

}  // namespace gpudl
