// Flatten: (N, d1, d2, ...) -> (N, d1 * d2 * ...), sharing memory.
#pragma once

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override { return "Flatten"; }
  Shape output_shape(const Shape& input) const override { return Shape{input.numel()}; }

 private:
  Shape input_shape_;
  bool has_input_ = false;
};

}  // namespace gpudl
