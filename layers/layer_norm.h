// LayerNorm: normalisation of each sample over its last axis, with a learned scale and shift.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

struct LayerNormOptions {
  float eps = 1e-5f;
  bool elementwise_affine = true;  // learn weight (init 1) and bias (init 0) of `features` values
};

// y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis of x (..., features), with
// each row's own mean and biased variance, as PyTorch's LayerNorm(features). The same in train and
// eval mode (no running statistics). Parameters "weight" and "bias".
class LayerNorm : public Module {
 public:
  // Throws ValueError for features < 1 or eps <= 0.
  explicit LayerNorm(std::int64_t features, LayerNormOptions options = {});

  // Throws ShapeError naming the layer unless x is (..., features), ValueError unless it is f32,
  // DeviceError when it is not on the layer's device.
  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  std::int64_t flops(const Shape& input) const override { return 8 * input.numel(); }
  std::vector<Parameter*> parameters() override;

 private:
  std::int64_t features_;
  LayerNormOptions options_;
  Parameter weight_, bias_;
  Tensor input_, mean_, rstd_;  // kept by a train-mode forward for backward
};

}  // namespace gpudl
