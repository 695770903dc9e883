// ConvTranspose2d: transposed 2-D convolution of (N, C, H, W) batches (a learned upsampling), with
// PyTorch's semantics and parameter layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/init.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

struct ConvTranspose2dOptions {
  std::int64_t stride = 1;
  // Cut from both sides of the output: dilation (kernel - 1) - padding is the zero padding of the
  // equivalent direct convolution.
  std::int64_t padding = 0;
  // Added to one side (bottom, right) of the output, choosing among the output sizes that a
  // stride > 1 maps to the same input size; must be below the stride or the dilation.
  std::int64_t output_padding = 0;
  std::int64_t dilation = 1;
  std::int64_t groups = 1;  // must divide in_channels and out_channels
  bool bias = true;
  // For the weight; kDefault is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with PyTorch's fan_in for this
  // layer: out / groups kernel² (its weight's second axis). The bias is always the same uniform.
  init::Scheme init = init::Scheme::kDefault;
  Generator* generator = nullptr;  // nullptr: default_generator()
  // Only bit-reproducible algorithms (CUDA; the CPU always is).
  bool deterministic = false;
  // Lets CUDA use TF32 tensor cores (~1e-3 relative error); off means FP32 math throughout.
  bool allow_tf32 = false;
};

// The adjoint of Conv2d: each input pixel scatters weight[i] (out / groups, k, k) times its value
// into the output at stride steps; the forward is a convolution's input gradient, the backward
// a convolution (dX) and a convolution's weight gradient with the roles of input and gradient
// swapped. Weight (in, out / groups, kernel, kernel), bias (out); output size
// (H - 1) stride - 2 padding + dilation (kernel - 1) + output_padding + 1.
class ConvTranspose2d : public Module {
 public:
  // Throws ValueError naming the layer for sizes < 1, stride, dilation or groups < 1, padding or
  // output_padding < 0, output_padding not below the stride or the dilation, or groups that do
  // not divide both channel counts.
  ConvTranspose2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size,
                  ConvTranspose2dOptions options = {});

  // Throws ShapeError naming the layer and the shapes for x other than (N, in, H, W) or an
  // output size below 1, ValueError for a dtype other than f32, bf16 or f16, DeviceError for an
  // input on another device than the parameters; OutOfMemoryError/CudaError from the kernels.
  Tensor forward(const Tensor& x) override;
  // Throws Error without a preceding forward in train mode, ShapeError for a gradient whose
  // shape differs from the output's.
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  // "ConvTranspose2d(8, 4, 3, stride=2, padding=1)", with ", output_padding=1", ", dilation=2",
  // ", groups=2", ", bias=false" where they differ from the defaults.
  std::string describe() const override;
  // (out, H', W') for a sample (in, H, W); throws ShapeError naming both otherwise, or when the
  // padding leaves no output.
  Shape output_shape(const Shape& input) const override;
  // Every input pixel meets out / groups kernel² weights: 2 in (out / groups) k² H W, plus the bias.
  std::int64_t flops(const Shape& input) const override;
  std::vector<Parameter*> parameters() override;
  // An output pixel reads the inputs within (extent - 1) / stride of its centre, at 1 / stride of
  // the input's spacing: the jump shrinks by the stride.
  void update_receptive_field(ReceptiveField& field) const override;

  Parameter& weight() { return weight_; }
  // Undefined tensors when the layer has no bias.
  Parameter& bias() { return bias_; }
  std::int64_t kernel_extent() const { return dilation_ * (kernel_ - 1) + 1; }

 private:
  // The output size along an axis of `size` inputs.
  std::int64_t out_size(std::int64_t size) const {
    return (size - 1) * stride_ - 2 * padding_ + kernel_extent() + output_padding_;
  }

  std::int64_t in_, out_, kernel_;
  std::int64_t stride_, padding_, output_padding_, dilation_, groups_;
  bool has_bias_;
  bool deterministic_, allow_tf32_;
  Parameter weight_, bias_;
  // The input as the kernels take it (in the compute type; zero-padded at the bottom and right
  // when output_padding >= stride, see forward) and the input's own plane size and type.
  Tensor input_;
  Tensor weight_c_;
  std::int64_t input_h_ = 0, input_w_ = 0;
  DType input_dtype_ = DType::kF32;
};

}  // namespace gpudl
