// Flatten as a reshape of the batch.
#include "gpudl/layers/flatten.h"

namespace gpudl {

Tensor Flatten::forward(const Tensor& x) {
  if (x.ndim() < 1) throw ShapeError("Flatten: expected a batch (N, ...), got a scalar");
  input_shape_ = x.shape();
  has_input_ = training_;
  return x.reshape({x.dim(0), x.dim(0) == 0 ? 0 : x.numel() / x.dim(0)});
}

Tensor Flatten::backward(const Tensor& grad_output) {
  require_forward(has_input_);
  if (grad_output.numel() != input_shape_.numel()) {
    throw ShapeError("Flatten: gradient " + grad_output.shape().str() + " does not match input " + input_shape_.str());
  }
  has_input_ = false;
  return grad_output.reshape(input_shape_.dims());
}

OnnxValue Flatten::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  return {graph.op("Flatten", {x.name}, {{"axis", std::int64_t{1}}}), 2};
}

}  // namespace gpudl
