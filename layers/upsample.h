// Upsample: enlarges (N, C, H, W) images by an integer factor, nearest or bilinear (PyTorch's
// nn.Upsample with align_corners=False).
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/nn/upsample.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

using nn::UpsampleMode;

// (N, C, H, W) -> (N, C, H s, W s). Nearest repeats each pixel s x s times; bilinear reads the two
// nearest inputs along each axis at source position (o + 0.5) / s - 0.5 (clamped below at 0), as
// PyTorch does with align_corners=False. Keeps its input's type (f32, bf16 or f16).
class Upsample : public Module {
 public:
  // Throws ValueError naming the layer for a scale factor < 1.
  explicit Upsample(std::int64_t scale_factor, UpsampleMode mode = UpsampleMode::kNearest);

  // Throws ShapeError naming the layer and the shape for x other than (N, C, H, W) with H, W >= 1,
  // ValueError for a dtype other than f32, bf16 or f16.
  Tensor forward(const Tensor& x) override;
  // Throws Error without a preceding forward, ShapeError when grad_output does not match the
  // output's shape, ValueError when it is not f32, bf16 or f16.
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  // "Upsample(scale_factor=2, mode=nearest)" or "mode=bilinear".
  std::string describe() const override;
  // (C, H, W) -> (C, H s, W s). Throws ShapeError when the input is not (C, H, W) with H, W >= 1.
  Shape output_shape(const Shape& input) const override;
  // Nearest copies (0); bilinear does 4 multiply-adds per output value.
  std::int64_t flops(const Shape& input) const override;
  // An output pixel sits at 1 / s of the input's spacing, centred as its source position says;
  // bilinear ones also read the next input along each axis.
  void update_receptive_field(ReceptiveField& field) const override;

  std::int64_t scale_factor() const { return scale_; }
  UpsampleMode mode() const { return mode_; }

 private:
  nn::UpsampleGeometry geometry_for(const Shape& x) const;

  std::int64_t scale_;
  UpsampleMode mode_;
  nn::UpsampleGeometry geometry_;  // of the last train-mode forward, for backward
  bool has_forward_ = false;
};

}  // namespace gpudl
