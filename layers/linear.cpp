// Linear layer: GEMM forward and backward through the ops facade, bias as a row broadcast.
#include "gpudl/layers/linear.h"

#include "gpudl/core/nn/elementwise.h"
#include "gpudl/core/runtime/ops.h"

namespace gpudl {

Linear::Linear(std::int64_t in_features, std::int64_t out_features, LinearOptions options)
    : in_(in_features), out_(out_features), has_bias_(options.bias) {
  if (in_ < 1 || out_ < 1) {
    throw ValueError("Linear(" + std::to_string(in_) + ", " + std::to_string(out_) + "): sizes must be >= 1");
  }
  Generator& gen = options.generator != nullptr ? *options.generator : default_generator();
  weight_ = make_parameter("weight", {out_, in_}, device_);
  init::fill(weight_.value, options.init, in_, out_, gen);
  if (has_bias_) {
    bias_ = make_parameter("bias", {out_}, device_);
    init::fill(bias_.value, init::Scheme::kDefault, in_, out_, gen);
  }
}

std::string Linear::describe() const {
  return "Linear(" + std::to_string(in_) + ", " + std::to_string(out_) + (has_bias_ ? "" : ", bias=false") + ")";
}

Shape Linear::output_shape(const Shape& input) const {
  if (input.ndim() == 0 || input[input.ndim() - 1] != in_) {
    throw ShapeError(describe() + ": expected " + std::to_string(in_) + " features per sample, got " + input.str());
  }
  std::vector<std::int64_t> dims = input.dims();
  dims.back() = out_;
  return Shape(dims);
}

std::int64_t Linear::flops(const Shape& input) const {
  const std::int64_t rows = input.ndim() == 0 ? 1 : input.numel() / in_;
  return rows * (2 * in_ * out_ + (has_bias_ ? out_ : 0));
}

std::vector<Parameter*> Linear::parameters() {
  if (has_bias_) return {&weight_, &bias_};
  return {&weight_};
}

Tensor Linear::forward(const Tensor& x) {
  // (..., in) → (..., out): leading axes (a sequence's time and batch) are rows of one GEMM.
  if (x.ndim() < 2 || x.dim(x.ndim() - 1) != in_) {
    throw ShapeError(describe() + ": expected input (N, " + std::to_string(in_) + ") or (..., " + std::to_string(in_) +
                     "), got " + x.shape().str());
  }
  require_float(x);
  input_shape_ = x.shape();
  input_dtype_ = x.dtype();
  const std::int64_t rows = x.numel() / in_;
  // Under bf16/fp16 both operands go in that type (the FP32 master weight rounded once per
  // forward), the sums stay FP32, and the output comes out in that type.
  const DType cd = activation_dtype(precision_);
  const Tensor x2 = x.reshape({rows, in_}).as(cd);
  const Tensor wc = weight_.value.as(cd);
  Tensor y = Tensor::empty({rows, out_}, cd, x.device());
  if (has_bias_ && cd == DType::kF32) {
    // One call: on a GPU the bias rides in cuBLASLt's epilogue instead of a pass of its own.
    ops::linear(y, x2, wc, bias_.value, allows_tf32(precision_));
  } else {
    ops::matmul(y, x2, wc, {.transpose_b = true, .allow_tf32 = allows_tf32(precision_)});
    if (has_bias_) nn::add_bias(y, bias_.value);
  }
  input_ = training_ ? x2 : Tensor();
  weight_c_ = training_ ? wc : Tensor();
  if (x.ndim() == 2) return y;
  std::vector<std::int64_t> dims = x.shape().dims();
  dims.back() = out_;
  return y.reshape(dims);
}

Tensor Linear::backward(const Tensor& grad_output) {
  require_forward(input_.defined());
  const std::int64_t rows = input_.dim(0);
  if (grad_output.ndim() != input_shape_.ndim() || grad_output.numel() != rows * out_ ||
      grad_output.dim(grad_output.ndim() - 1) != out_) {
    throw ShapeError(describe() + ": gradient " + grad_output.shape().str() + " does not match output [" +
                     std::to_string(rows) + ", " + std::to_string(out_) + "]");
  }
  const bool tf32 = allows_tf32(precision_);
  const Tensor dy = grad_output.reshape({rows, out_}).as(input_.dtype());
  // dW += dYᵀ X (into the FP32 gradient), db += column sums of dY, dX = dY W.
  ops::matmul(weight_.grad, dy, input_, {.transpose_a = true, .beta = 1.0f, .allow_tf32 = tf32});
  if (has_bias_) {
    nn::accumulate_bias_grad(bias_.grad, dy);
  }
  const Tensor wc = weight_c_;
  input_ = weight_c_ = Tensor();
  if (!input_grad_) return Tensor();
  Tensor dx = ops::matmul(dy, wc, {.allow_tf32 = tf32});
  return dx.reshape(input_shape_.dims()).as(input_dtype_);
}

// A matrix input is one Gemm; more axes (a recurrent layer's (T, B, features)) a MatMul against
// the transposed weight and an Add.
OnnxValue Linear::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  const std::string w = graph.weight(weight_);
  if (x.rank == 2) {
    std::vector<std::string> inputs{x.name, w};
    if (has_bias_) inputs.push_back(graph.weight(bias_));
    return {graph.op("Gemm", inputs, {{"transB", std::int64_t{1}}}), 2};
  }
  std::string y = graph.op("MatMul", {x.name, graph.op("Transpose", {w}, {{"perm", std::vector<std::int64_t>{1, 0}}})});
  if (has_bias_) y = graph.op("Add", {y, graph.weight(bias_)});
  return {y, x.rank};
}

}  // namespace gpudl
