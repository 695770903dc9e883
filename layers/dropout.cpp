// Dropout with Philox masks: the same mask on the CPU and the GPU for the same generator state.
#include "gpudl/layers/dropout.h"

#include "gpudl/core/runtime/cuda_graph.h"
#include "gpudl/core/runtime/error.h"
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
  if (!x.device().is_cuda()) {
    nn::dropout_forward(y, mask_, x, p_, generator_.seed(), generator_.next_offset());
    return y;
  }
  if (!offset_.defined() || offset_.device() != x.device()) {
    offset_ = Tensor::empty({1}, DType::kI64, x.device());
    generator_.set_device_offset(Generator::kNoDeviceOffset);
  }
  const std::uint64_t offset = generator_.next_offset();
  if (generator_.device_offset() != offset) {
    // Writing the value inside a capture would freeze it into every replay.
    if (CudaGraph::capturing(x.device())) {
      throw Error(describe() + ": its device offset is not known to be the generator's (" + std::to_string(offset) +
                  ") at capture; run an eager step first");
    }
    ops::fill(offset_, static_cast<double>(offset));  // exact: offsets stay far below 2^53
  }
  nn::dropout_forward_at(y, mask_, x, p_, generator_.seed(), offset_);
  ops::count_up(offset_);
  generator_.set_device_offset(offset + 1);
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
