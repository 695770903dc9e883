// Conv2d: 2-D convolution of (N, C, H, W) batches with square kernels, strides, padding,
// dilation and groups.
#pragma once

#include <cstdint>

#include "gpudl/core/runtime/init.h"
#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

struct Conv2dOptions {
  std::int64_t stride = 1;
  std::int64_t padding = 0;
  // "Same" padding for stride 1: padding = dilation (kernel - 1) / 2, so H and W are kept.
  // Needs stride 1, padding 0 and an even dilation (kernel - 1) (an odd kernel, usually).
  bool same = false;
  std::int64_t dilation = 1;
  std::int64_t groups = 1;  // must divide in_channels and out_channels; groups = in = out is depthwise
  bool bias = true;
  // For the weight; kDefault is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in / groups
  // kernel², as PyTorch. The bias is always U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  init::Scheme init = init::Scheme::kDefault;
  Generator* generator = nullptr;  // nullptr: default_generator()
  // Only bit-reproducible algorithms (CUDA; the CPU always is).
  bool deterministic = false;
  // Lets CUDA use TF32 tensor cores (~1e-3 relative error); off means FP32 math throughout.
  bool allow_tf32 = false;
};

// Cross-correlation as in PyTorch: y[b, o] = bias[o] + sum over the input channels i of o's
// group of weight[o, i] ⋆ x[b, i]. Weight (out, in / groups, kernel, kernel), bias (out).
class Conv2d : public Module {
 public:
  // Throws ValueError for sizes < 1, stride, dilation or groups < 1, padding < 0, groups that
  // do not divide both channel counts, or "same" padding that cannot be had (see options).
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size, Conv2dOptions options = {});

  // Throws ShapeError naming the layer and the shapes for x other than (N, in, H, W) f32 or a
  // kernel larger than the padded input; OutOfMemoryError/CudaError from the CUDA kernels.
  Tensor forward(const Tensor& x) override;
  // Throws Error without a preceding forward in train mode, ShapeError for a gradient whose
  // shape differs from the output's.
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  // "Conv2d(3, 64, 3, stride=1, padding=1)", with ", dilation=2", ", groups=4", ", bias=false"
  // where they differ from the defaults.
  std::string describe() const override;
  // (out, H', W') for a sample (in, H, W); throws ShapeError naming both otherwise, or when the
  // dilated kernel is larger than the padded input.
  Shape output_shape(const Shape& input) const override;
  std::int64_t flops(const Shape& input) const override;
  std::vector<Parameter*> parameters() override;

  Parameter& weight() { return weight_; }
  // Undefined tensors when the layer has no bias.
  Parameter& bias() { return bias_; }

  // For receptive fields: the dilated kernel size dilation (kernel - 1) + 1, the stride and the
  // padding actually applied (resolved for "same").
  std::int64_t kernel_extent() const { return dilation_ * (kernel_ - 1) + 1; }
  std::int64_t stride() const { return stride_; }
  std::int64_t padding() const { return padding_; }
  void update_receptive_field(ReceptiveField& field) const override { field.apply(kernel_extent(), stride_, padding_); }

 private:
  std::int64_t in_, out_, kernel_;
  std::int64_t stride_, padding_, dilation_, groups_;
  bool has_bias_;
  bool deterministic_, allow_tf32_;
  Parameter weight_, bias_;
  Tensor input_;
  // Under bf16/fp16: the input and the weight in that type, kept for backward, and the type the
  // input came in (the input gradient is returned in it).
  Tensor weight_c_;
  DType input_dtype_ = DType::kF32;
};

}  // namespace gpudl
