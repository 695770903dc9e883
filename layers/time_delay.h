// TimeDelay: the course's delay line as a layer, a 1-D convolution over time with dilation.
#pragma once

#include <cstdint>

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

// x (N, in, T) → y (N, out, T − dilation·(taps − 1)): output step j sees the `taps` inputs
// x_{j + k·dilation}, k = 0 … taps − 1, so its latest input and taps − 1 delayed copies feed one
// affine map, weight (out, in, taps) and bias (out). With dilation 1 and one input channel
// this is the time-delay network's input layer: x_t, x_{t−1}, …, x_{t−taps+1} side by side.
// Initialised as PyTorch's Conv1d, U(-1/√(in·taps), 1/√(in·taps)).
class TimeDelay : public Module {
 public:
  // Throws ValueError for sizes, taps or dilation < 1.
  TimeDelay(std::int64_t in_channels, std::int64_t out_channels, std::int64_t taps, std::int64_t dilation = 1,
            Generator* generator = nullptr);

  // Throws ShapeError for x other than (N, in, T) f32 with T >= the delay line's span.
  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  std::int64_t flops(const Shape& input) const override;
  std::vector<Parameter*> parameters() override { return {&weight_, &bias_}; }
  void update_receptive_field(ReceptiveField& field) const override { field.apply(span(), 1, 0); }

  // Input steps one output sees: dilation (taps − 1) + 1.
  std::int64_t span() const { return dilation_ * (taps_ - 1) + 1; }
  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }

 private:
  std::int64_t in_, out_, taps_, dilation_;
  Parameter weight_, bias_;
  Tensor input_;
  // Under bf16/fp16: the input and the weight in that type, kept for backward, and the type the
  // input came in (the input gradient is returned in it).
  Tensor weight_c_;
  DType input_dtype_ = DType::kF32;
};

}  // namespace gpudl
