// Pooling layers: MaxPool2d and AvgPool2d (square windows over (N, C, H, W)) and GlobalAvgPool.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"
#include "gpudl/core/nn/pool.h"

namespace gpudl {

// What MaxPool2d and AvgPool2d share: a square window with its stride and zero padding,
// floor-mode output sizes (PyTorch's default), the shape checks and the receptive-field hooks.
class Pool2d : public Module {
 public:
  // "MaxPool2d(2, stride=2)", with ", padding=1" when there is padding.
  std::string describe() const override;
  json::Value config() const override;
  // (C, H, W) -> (C, out_h, out_w). Throws ShapeError naming the layer and the shape when the
  // input is not (C, H, W) or the window does not fit the padded input.
  Shape output_shape(const Shape& input) const override;
  // One operation (compare or add) per window element per output: C * out_h * out_w * k².
  // Throws ShapeError as output_shape does.
  std::int64_t flops(const Shape& input) const override;

  // The window as the receptive-field calculation sees it.
  std::int64_t kernel_extent() const { return kernel_; }
  std::int64_t stride() const { return stride_; }
  std::int64_t padding() const { return padding_; }
  void update_receptive_field(ReceptiveField& field) const override { field.apply(kernel_, stride_, padding_); }

 protected:
  // stride defaults to the kernel (non-overlapping windows). Throws ValueError naming the
  // layer for kernel < 1, stride < 1, padding < 0 or padding > kernel / 2.
  Pool2d(std::string name, std::int64_t kernel, std::optional<std::int64_t> stride, std::int64_t padding);

  // The kernel geometry for a batch of shape `x`. Throws ShapeError when x is not
  // (N, C, H, W), the window does not fit, or a plane is too large for 32-bit indices.
  nn::PoolGeometry geometry_for(const Shape& x) const;
  // The geometry of an (n, c, h, w) batch; `shown` is the shape the caller was given, for
  // messages. Throws ShapeError as geometry_for does.
  nn::PoolGeometry geometry(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                                 const Shape& shown) const;
  // Checks that backward has its forward and that grad_output is f32 with the forward output's
  // shape; throws Error, ShapeError or ValueError naming the layer.
  void check_backward(const Tensor& grad_output) const;

  std::string name_;
  std::int64_t kernel_, stride_, padding_;
  nn::PoolGeometry geometry_;  // of the last forward, for backward
  bool has_forward_ = false;
};

// Maximum over each window. Backward routes each output's gradient to the input element that
// won its window (saved by forward as an index); padding never wins, NaN propagates, and ties go
// to the first element in row-major window order.
class MaxPool2d : public Pool2d {
 public:
  // Throws ValueError as Pool2d does.
  explicit MaxPool2d(std::int64_t kernel, std::optional<std::int64_t> stride = std::nullopt,
                     std::int64_t padding = 0);

  // x (N, C, H, W) f32 -> (N, C, out_h, out_w). Throws ShapeError (see Pool2d::geometry_for),
  // ValueError for a dtype other than f32.
  Tensor forward(const Tensor& x) override;
  // Throws Error without a preceding forward, ShapeError when grad_output does not match the
  // output's shape, ValueError when it is not f32.
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;

 private:
  Tensor argmax_;  // (N, C, out_h, out_w) i32: each window's winner within its plane
};

// Mean over each window, padding counted as zeros (count_include_pad = true, PyTorch's
// default): every window divides by kernel².
class AvgPool2d : public Pool2d {
 public:
  // Throws ValueError as Pool2d does.
  explicit AvgPool2d(std::int64_t kernel, std::optional<std::int64_t> stride = std::nullopt,
                     std::int64_t padding = 0);

  // x (N, C, H, W) f32 -> (N, C, out_h, out_w). Throws ShapeError (see Pool2d::geometry_for),
  // ValueError for a dtype other than f32.
  Tensor forward(const Tensor& x) override;
  // Throws Error without a preceding forward, ShapeError when grad_output does not match the
  // output's shape, ValueError when it is not f32.
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
};

// Mean over each channel's whole plane: (N, C, H, W) -> (N, C), as before a ResNet's classifier.
class GlobalAvgPool : public Module {
 public:
  // x (N, C, H, W) f32 with H * W >= 1. Throws ShapeError naming the shape otherwise, ValueError
  // for a dtype other than f32.
  Tensor forward(const Tensor& x) override;
  // Throws Error without a preceding forward, ShapeError when grad_output is not (N, C),
  // ValueError when it is not f32.
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override { return "GlobalAvgPool"; }
  // (C, H, W) -> (C). Throws ShapeError when the input is not (C, H, W) with H * W >= 1.
  Shape output_shape(const Shape& input) const override;
  // One add per input element: C * H * W. Throws ShapeError as output_shape does.
  std::int64_t flops(const Shape& input) const override;

 private:
  Shape input_shape_;
  bool has_forward_ = false;
};

}  // namespace gpudl
