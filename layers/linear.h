// Linear: y = x Wᵀ + b for x of shape (N, in) or (..., in), W of shape (out, in).
#pragma once

#include <cstdint>

#include "gpudl/core/runtime/init.h"
#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

struct LinearOptions {
  bool bias = true;
  init::Scheme init = init::Scheme::kDefault;  // for W; b is U(-1/sqrt(in), 1/sqrt(in))
  Generator* generator = nullptr;              // nullptr: default_generator()
};

class Linear : public Module {
 public:
  // Throws ValueError for sizes < 1.
  Linear(std::int64_t in_features, std::int64_t out_features, LinearOptions options = {});

  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  std::int64_t flops(const Shape& input) const override;
  std::vector<Parameter*> parameters() override;

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }

 private:
  std::int64_t in_, out_;
  bool has_bias_;
  Parameter weight_, bias_;
  Tensor input_;  // (rows, in)
  // Under bf16/fp16: the input and the weight in that type, kept for backward, and the type the
  // input came in (the input gradient is returned in it).
  Tensor weight_c_;
  DType input_dtype_ = DType::kF32;
  Shape input_shape_;
};

}  // namespace gpudl
