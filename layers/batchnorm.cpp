// BatchNorm1d through the batch-norm kernels (statistics per channel over batch and length).
#include "gpudl/layers/batchnorm.h"

#include "gpudl/core/runtime/format.h"
#include "gpudl/core/nn/norm.h"

namespace gpudl {

BatchNorm1d::BatchNorm1d(std::int64_t features, BatchNormOptions options) : features_(features), options_(options) {
  if (features < 1 || !(options.eps > 0.0f) || !(options.momentum >= 0.0f && options.momentum <= 1.0f)) {
    throw ValueError("BatchNorm1d(" + std::to_string(features) + ", eps=" + format_number(options.eps) +
                     ", momentum=" + format_number(options.momentum) +
                     "): need features >= 1, eps > 0 and momentum in [0, 1]");
  }
  gamma_ = make_parameter("weight", {features}, device_);
  gamma_.value.fill_(1.0);
  beta_ = make_parameter("bias", {features}, device_);
  beta_.value.fill_(0.0);
  running_mean_ = Tensor::zeros({features});
  running_var_ = Tensor::full({features}, 1.0);
}

std::string BatchNorm1d::describe() const { return "BatchNorm1d(" + std::to_string(features_) + ")"; }

Shape BatchNorm1d::output_shape(const Shape& input) const {
  if (input.ndim() < 1 || input[0] != features_) {
    throw ShapeError(describe() + ": expected " + std::to_string(features_) + " channels per sample, got " +
                     input.str());
  }
  return input;
}

std::int64_t BatchNorm1d::inner_of(const Tensor& x) const {
  if ((x.ndim() != 2 && x.ndim() != 3) || x.dim(1) != features_) {
    throw ShapeError(describe() + ": expected input (N, " + std::to_string(features_) + ") or (N, " +
                     std::to_string(features_) + ", L), got " + x.shape().str());
  }
  return x.ndim() == 3 ? x.dim(2) : 1;
}

Shape BatchNorm2d::output_shape(const Shape& input) const {
  if (input.ndim() != 3 || input[0] != features_) {
    throw ShapeError(describe() + ": expected (" + std::to_string(features_) + ", H, W) per sample, got " +
                     input.str());
  }
  return input;
}

std::int64_t BatchNorm2d::inner_of(const Tensor& x) const {
  if (x.ndim() != 4 || x.dim(1) != features_) {
    throw ShapeError(describe() + ": expected input (N, " + std::to_string(features_) + ", H, W), got " +
                     x.shape().str());
  }
  return x.dim(2) * x.dim(3);
}

const Tensor& BatchNorm1d::scratch_for(Device device, std::int64_t n, std::int64_t c, std::int64_t inner) {
  const std::int64_t need = nn::batchnorm_scratch_floats(device, n, c, inner);
  if (need == 0) {
    scratch_ = Tensor();
  } else if (!scratch_.defined() || scratch_.numel() < need || scratch_.device() != device) {
    scratch_ = Tensor();  // back to the pool before asking for the larger buffer
    scratch_ = Tensor::empty({need}, DType::kF32, device);
  }
  return scratch_;
}

Tensor BatchNorm1d::forward(const Tensor& x) {
  require_float(x);
  const std::int64_t inner = inner_of(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (training_) {
    if (x.dim(0) * inner < 2) {
      throw ShapeError(describe() + ": train mode needs more than one value per channel, got " + x.shape().str());
    }
    save_mean_ = Tensor::empty({features_}, DType::kF32, x.device());
    save_invstd_ = Tensor::empty({features_}, DType::kF32, x.device());
    nn::batchnorm_forward_train(y, save_mean_, save_invstd_, running_mean_, running_var_, x, gamma_.value,
                                beta_.value, options_.eps, options_.momentum,
                                scratch_for(x.device(), x.dim(0), features_, inner));
    input_ = x;
  } else {
    nn::batchnorm_forward_eval(y, x, running_mean_, running_var_, gamma_.value, beta_.value, options_.eps);
    input_ = Tensor();
  }
  return y;
}

Tensor BatchNorm1d::backward(const Tensor& grad_output) {
  require_forward(input_.defined());
  require_grad_shape(grad_output, input_.shape());
  Tensor dx = Tensor::empty(input_.shape(), input_.dtype(), input_.device());
  nn::batchnorm_backward(dx, gamma_.grad, beta_.grad, grad_output, input_, save_mean_, save_invstd_, gamma_.value,
                         scratch_for(dx.device(), input_.dim(0), features_, inner_of(input_)));
  input_ = Tensor();
  return dx;
}

}  // namespace gpudl
