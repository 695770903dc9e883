// Dropout with Philox masks: the same mask on the CPU and the GPU for the same generator state.
#include "gpudl/layers/dropout.h"

#include "gpudl/core/runtime/format.h"
#include "gpudl/core/nn/elementwise.h"
#include "gpudl/core/runtime/ops.h"

namespace gpudl {

namespace {
std::uint64_t pick_seed(std::uint64_t seed) {
  // A fresh subsequence of the default generator: distinct per layer, repeatable per program.
  return seed != 0 ? seed : default_generator().seed() ^ (0xD1B54A32D192ED03ull * (default_generator().next_offset() + 1));
}
}  // namespace

Dropout::Dropout(float p, std::uint64_t seed) : p_(p), generator_(pick_seed(seed)) {
  if (!(p >= 0.0f && p < 1.0f)) throw ValueError("Dropout: p must be in [0, 1), got " + format_number(p));
}

std::string Dropout::describe() const { return "Dropout(" + format_number(p_) + ")"; }

Tensor Dropout::forward(const Tensor& x) {
  require_float(x);
  kept_ = training_;
  identity_ = !training_ || p_ == 0.0f;
  if (identity_) {
    mask_ = Tensor();
    return x;
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  mask_ = Tensor::empty(x.shape(), DType::kF32, x.device());
  nn::dropout_forward(y, mask_, x, p_, generator_.seed(), generator_.next_offset());
  return y;
}

Tensor Dropout::backward(const Tensor& grad_output) {
  require_forward(kept_);
  kept_ = false;
  if (identity_) return grad_output;
  require_grad_shape(grad_output, mask_.shape());
  Tensor dx = Tensor::empty(grad_output.shape(), grad_output.dtype(), grad_output.device());
  nn::dropout_backward(dx, grad_output, mask_);
  mask_ = Tensor();
  return dx;
}

OnnxValue Dropout::to_onnx(OnnxGraph& graph, const OnnxValue& x) { return {graph.op("Identity", {x.name}), x.rank}; }

}  // namespace gpudl
