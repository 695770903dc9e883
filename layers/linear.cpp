// Linear layer: GEMM forward and backward through the ops facade, bias as a row broadcast.
#include "gpudl/layers/linear.h"

#include "gpudl/core/dispatch.h"
#include "gpudl/core/ops.h"
#include "gpudl/kernels/elementwise.h"
#include "gpudl/kernels/reduce.h"

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
  if (input.numel() != in_) {
    throw ShapeError(describe() + ": expected " + std::to_string(in_) + " features per sample, got " + input.str());
  }
  return Shape{out_};
}

std::int64_t Linear::flops(const Shape&) const { return 2 * in_ * out_ + (has_bias_ ? out_ : 0); }

std::vector<Parameter*> Linear::parameters() {
  if (has_bias_) return {&weight_, &bias_};
  return {&weight_};
}

Tensor Linear::forward(const Tensor& x) {
  if (x.ndim() != 2 || x.dim(1) != in_) {
    throw ShapeError(describe() + ": expected input (N, " + std::to_string(in_) + "), got " + x.shape().str());
  }
  Tensor y = Tensor::empty({x.dim(0), out_}, DType::kF32, x.device());
  ops::matmul(y, x, weight_.value, {.transpose_b = true});
  if (has_bias_) {
    GPUDL_DISPATCH(x.device(), false, add_row_vector, y.data<float>(), bias_.value.data<float>(), x.dim(0), out_);
  }
  input_ = x;
  return y;
}

Tensor Linear::backward(const Tensor& grad_output) {
  if (!input_.defined()) throw Error(describe() + ": backward called before forward");
  if (grad_output.shape() != Shape{input_.dim(0), out_}) {
    throw ShapeError(describe() + ": gradient " + grad_output.shape().str() + " does not match output [" +
                     std::to_string(input_.dim(0)) + ", " + std::to_string(out_) + "]");
  }
  // dW += dYᵀ X, db += column sums of dY, dX = dY W.
  ops::matmul(weight_.grad, grad_output, input_, {.transpose_a = true, .beta = 1.0f});
  if (has_bias_) {
    GPUDL_DISPATCH(grad_output.device(), false, column_sum_add, bias_.grad.data<float>(), grad_output.data<float>(),
                   grad_output.dim(0), out_);
  }
  Tensor dx = ops::matmul(grad_output, weight_.value);
  input_ = Tensor();
  return dx;
}

}  // namespace gpudl
