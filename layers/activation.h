// Activation layers (Sigmoid, Tanh, ReLU, LeakyReLU, ELU, GELU, SiLU), Softmax/LogSoftmax over the last axis,
// and Scale.
#pragma once

#include "gpudl/core/runtime/format.h"
#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"
#include "gpudl/core/nn/activation.h"

namespace gpudl {

// An element-wise non-linearity y = g(x); backward uses the x and y a train-mode forward kept.
class ActivationLayer : public Module {
 public:
  ActivationLayer(nn::Activation kind, float alpha, std::string name);
  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override { return name_; }
  std::int64_t flops(const Shape& input) const override { return input.numel(); }

 private:
  nn::Activation kind_;
  float alpha_;
  std::string name_;
  Tensor input_, output_;
};

class Sigmoid : public ActivationLayer {
 public:
  Sigmoid() : ActivationLayer(nn::Activation::kSigmoid, 0.0f, "Sigmoid") {}
};
class Tanh : public ActivationLayer {
 public:
  Tanh() : ActivationLayer(nn::Activation::kTanh, 0.0f, "Tanh") {}
};
class ReLU : public ActivationLayer {
 public:
  ReLU() : ActivationLayer(nn::Activation::kRelu, 0.0f, "ReLU") {}
};
class LeakyReLU : public ActivationLayer {
 public:
  explicit LeakyReLU(float negative_slope = 0.01f)
      : ActivationLayer(nn::Activation::kLeakyRelu, negative_slope,
                        "LeakyReLU(" + format_number(negative_slope) + ")") {}
};
class ELU : public ActivationLayer {
 public:
  explicit ELU(float alpha = 1.0f)
      : ActivationLayer(nn::Activation::kElu, alpha, "ELU(" + format_number(alpha) + ")") {}
};

// GELU, x Φ(x) with Φ the standard normal CDF; with tanh_approximation, PyTorch's
// approximate="tanh" form 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))).
class GELU : public ActivationLayer {
 public:
  explicit GELU(bool tanh_approximation = false)
      : ActivationLayer(tanh_approximation ? nn::Activation::kGeluTanh : nn::Activation::kGelu, 0.0f,
                        tanh_approximation ? "GELU(tanh)" : "GELU") {}
};
// SiLU (swish), x σ(x).
class SiLU : public ActivationLayer {
 public:
  SiLU() : ActivationLayer(nn::Activation::kSilu, 0.0f, "SiLU") {}
};

// Softmax (or log-softmax) over the last axis.
class Softmax : public Module {
 public:
  explicit Softmax(bool log = false) : log_(log) {}
  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override { return log_ ? "LogSoftmax" : "Softmax"; }
  std::int64_t flops(const Shape& input) const override { return 3 * input.numel(); }

 private:
  bool log_;
  Tensor output_;
};

class LogSoftmax : public Softmax {
 public:
  LogSoftmax() : Softmax(true) {}
};

// y = factor x: a fixed scale, such as airbench's 1/9 on its logits (which slows the
// classifier's effective learning rate by factor² against the layers before it).
class Scale : public Module {
 public:
  // Throws ValueError for a factor that is not finite.
  explicit Scale(float factor);
  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override { return "Scale(" + format_number(factor_) + ")"; }
  std::int64_t flops(const Shape& input) const override { return input.numel(); }

 private:
  float factor_;
  bool forwarded_ = false;  // a train-mode forward waits for its backward
  Shape shape_;
  DType dtype_ = DType::kF32;
};

}  // namespace gpudl
