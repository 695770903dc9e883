// LayerNorm through the layer-norm kernels (statistics per row over the last axis).
#include "gpudl/layers/layer_norm.h"

#include "gpudl/core/nn/layer_norm.h"
#include "gpudl/core/runtime/format.h"

namespace gpudl {

LayerNorm::LayerNorm(std::int64_t features, LayerNormOptions options) : features_(features), options_(options) {
  if (features < 1 || !(options.eps > 0.0f)) {
    throw ValueError("LayerNorm(" + std::to_string(features) + ", eps=" + format_number(options.eps) +
                     "): need features >= 1 and eps > 0");
  }
  if (options.elementwise_affine) {
    weight_ = make_parameter("weight", {features}, device_);
    weight_.value.fill_(1.0);
    bias_ = make_parameter("bias", {features}, device_);
    bias_.value.fill_(0.0);
  }
}

std::string LayerNorm::describe() const {
  return "LayerNorm(" + std::to_string(features_) + (options_.elementwise_affine ? "" : ", affine=false") + ")";
}

Shape LayerNorm::output_shape(const Shape& input) const {
  if (input.ndim() < 1 || input[input.ndim() - 1] != features_) {
    throw ShapeError(describe() + ": expected (..., " + std::to_string(features_) + ") per sample, got " + input.str());
  }
  return input;
}

std::vector<Parameter*> LayerNorm::parameters() {
  if (options_.elementwise_affine) return {&weight_, &bias_};
  return {};
}

Tensor LayerNorm::forward(const Tensor& x) {
  require_float(x);
  if (x.ndim() < 1 || x.dim(x.ndim() - 1) != features_) {
    throw ShapeError(describe() + ": expected input (..., " + std::to_string(features_) + "), got " + x.shape().str());
  }
  if (x.device() != device_) {
    throw DeviceError(describe() + ": input on " + x.device().str() + " but parameters on " + device_.str());
  }
  const std::int64_t rows = x.numel() / features_;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, DType::kF32, x.device());
  Tensor rstd = Tensor::empty({rows}, DType::kF32, x.device());
  nn::layer_norm_forward(y, mean, rstd, x, weight_.value, bias_.value, options_.eps);
  if (training_) {
    input_ = x;
    mean_ = mean;
    rstd_ = rstd;
  } else {
    input_ = mean_ = rstd_ = Tensor();
  }
  return y;
}

Tensor LayerNorm::backward(const Tensor& grad_output) {
  require_forward(input_.defined());
  require_grad_shape(grad_output, input_.shape());
  Tensor dx = Tensor::empty(input_.shape(), input_.dtype(), input_.device());
  nn::layer_norm_backward(dx, weight_.grad, bias_.grad, grad_output, input_, mean_, rstd_, weight_.value);
  input_ = mean_ = rstd_ = Tensor();
  return dx;
}

OnnxValue LayerNorm::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  std::vector<std::string> inputs{x.name};
  if (options_.elementwise_affine) {
    inputs.push_back(graph.weight(weight_));
    inputs.push_back(graph.weight(bias_));
  } else {  // ONNX requires a scale
    const std::vector<float> ones(static_cast<std::size_t>(features_), 1.0f);
    inputs.push_back(graph.weight("layer_norm_ones", {features_}, ones));
  }
  return {graph.op("LayerNormalization", inputs, {{"axis", std::int64_t{-1}}, {"epsilon", options_.eps}}), x.rank};
}

}  // namespace gpudl
