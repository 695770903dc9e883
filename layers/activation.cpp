// Activation layers, Softmax/LogSoftmax over the last axis, and Scale.
#include "gpudl/layers/activation.h"

#include <cmath>

#include "gpudl/core/runtime/ops.h"

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

Scale::Scale(float factor) : factor_(factor) {
  if (!std::isfinite(factor)) throw ValueError("Scale(" + format_number(factor) + "): the factor must be finite");
}

namespace {
// out = factor x in x's type (the scale kernel is f32's; other types go through an f32 copy).
Tensor scaled(const Tensor& x, float factor, DType dtype) {
  Tensor f = Tensor::empty(x.shape(), DType::kF32, x.device());
  ops::scale(f, x.as(DType::kF32), factor);
  return f.as(dtype);
}
}  // namespace

Tensor Scale::forward(const Tensor& x) {
  require_float(x);
  forwarded_ = training_;
  shape_ = x.shape();
  dtype_ = x.dtype();
  return scaled(x, factor_, x.dtype());
}

Tensor Scale::backward(const Tensor& grad_output) {
  require_forward(forwarded_);
  require_grad_shape(grad_output, shape_);
  forwarded_ = false;
  return scaled(grad_output, factor_, dtype_);
}

// GELU and SiLU are written from ONNX's primitives, which every opset from 17 has.
OnnxValue ActivationLayer::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  const std::string& in = x.name;
  auto half_x_times = [&](const std::string& s) {
    return graph.op("Mul", {graph.op("Mul", {in, graph.scalar("half", 0.5f)}),
                            graph.op("Add", {graph.scalar("one", 1.0f), s})});
  };
  std::string y;
  switch (kind_) {
    case nn::Activation::kSigmoid: y = graph.op("Sigmoid", {in}); break;
    case nn::Activation::kTanh: y = graph.op("Tanh", {in}); break;
    case nn::Activation::kRelu: y = graph.op("Relu", {in}); break;
    case nn::Activation::kLeakyRelu: y = graph.op("LeakyRelu", {in}, {{"alpha", alpha_}}); break;
    case nn::Activation::kElu: y = graph.op("Elu", {in}, {{"alpha", alpha_}}); break;
    case nn::Activation::kGelu:  // x/2 (1 + erf(x / sqrt 2))
      y = half_x_times(graph.op("Erf", {graph.op("Mul", {in, graph.scalar("inv_sqrt2", 0.70710678118654752f)})}));
      break;
    case nn::Activation::kGeluTanh: {  // x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      const std::string cube = graph.op("Mul", {graph.op("Mul", {in, in}), in});
      const std::string inner = graph.op("Add", {in, graph.op("Mul", {cube, graph.scalar("gelu_cubic", 0.044715f)})});
      y = half_x_times(graph.op("Tanh", {graph.op("Mul", {inner, graph.scalar("gelu_scale", 0.79788456080286536f)})}));
      break;
    }
    case nn::Activation::kSilu: y = graph.op("Mul", {in, graph.op("Sigmoid", {in})}); break;
    case nn::Activation::kCount: return Module::to_onnx(graph, x);
  }
  return {y, x.rank};
}

OnnxValue Softmax::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  return {graph.op(log_ ? "LogSoftmax" : "Softmax", {x.name}, {{"axis", std::int64_t{-1}}}), x.rank};
}

OnnxValue Scale::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  return {graph.op("Mul", {x.name, graph.scalar("scale", factor_)}), x.rank};
}

}  // namespace gpudl
