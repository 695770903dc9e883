// BatchNorm1d through the batch-norm kernels (statistics per channel over batch and length).
#include "gpudl/layers/batchnorm.h"

#include "gpudl/core/dist/dist.h"
#include "gpudl/core/runtime/format.h"
#include "gpudl/core/runtime/ops.h"
#include "gpudl/core/nn/activation.h"
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
  num_batches_tracked_ = Tensor::zeros(Shape{}, DType::kI64);
  relu_ = options.relu;
}

std::string BatchNorm1d::fusion_suffix() const {
  return std::string(options_.sync ? ", sync" : "") + (takes_residual_ ? ", + shortcut" : "") + (relu_ ? ", relu" : "");
}

std::string BatchNorm1d::describe() const { return "BatchNorm1d(" + std::to_string(features_) + fusion_suffix() + ")"; }

void BatchNorm1d::fuse_residual(bool relu) {
  takes_residual_ = true;
  relu_ = relu_ || relu;
}

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

namespace {

// Per-channel sums of x seen as (n, c, inner), into (c).
Tensor channel_sums(const Tensor& x, std::int64_t n, std::int64_t c, std::int64_t inner) {
  return ops::sum(ops::sum(x.reshape({n, c, inner}), 2), 0);
}

// y = (x - shift) * scale per channel, through the eval kernel (variance 1, eps 0, bias 0).
void channel_affine(const Tensor& y, const Tensor& x, const Tensor& shift, const Tensor& scale, const Tensor& ones,
                    const Tensor& zeros) {
  nn::batchnorm_forward_eval(y, x, shift, ones, scale, zeros, 0.0f);
}

}  // namespace

// Statistics over every rank's batch, all on the device: the per-channel sums and counts are
// all-reduced, then the centred squares (two passes, as stable as the one-rank kernel), and
// the output is the eval kernel's normalisation with those statistics.
Tensor BatchNorm1d::sync_forward(const Tensor& x, std::int64_t inner) {
  const std::int64_t n = x.dim(0), c = features_;
  const Device dev = x.device();
  dist::ProcessGroup& group = dist::group(dev);
  const Tensor xf = x.as(DType::kF32);
  const Tensor ones = Tensor::full({c}, 1.0, DType::kF32, dev), zeros = Tensor::zeros({c}, DType::kF32, dev);
  Tensor stats = Tensor::empty({2 * c}, DType::kF32, dev);
  ops::copy(stats.slice(0, c), channel_sums(xf, n, c, inner));
  stats.slice(c, 2 * c).fill_(static_cast<double>(n * inner));
  group.all_reduce(stats);
  sync_count_ = stats.slice(c, 2 * c);
  const Tensor mean = ops::div(stats.slice(0, c), sync_count_);
  Tensor centred = Tensor::empty(xf.shape(), DType::kF32, dev);
  channel_affine(centred, xf, mean, ones, ones, zeros);
  Tensor var = channel_sums(ops::mul(centred, centred), n, c, inner);
  group.all_reduce(var);
  ops::div(var, var, sync_count_);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), dev);
  nn::batchnorm_forward_eval(y, x, mean, var, gamma_.value, beta_.value, options_.eps);
  // 1 / sqrt(var + eps), by the same kernel applied to a row of ones.
  save_invstd_ = Tensor::empty({c}, DType::kF32, dev);
  nn::batchnorm_forward_eval(save_invstd_.reshape({1, c}), ones.reshape({1, c}), zeros, var, ones, zeros, options_.eps);
  save_mean_ = mean;
  // Running variance is unbiased over the global batch: var * count / (count - 1).
  const float m = options_.momentum;
  const Tensor unbiased = ops::div(ops::mul(var, sync_count_), ops::sub(sync_count_, ones));
  ops::scale(running_mean_, running_mean_, 1.0f - m);
  ops::axpy(running_mean_, m, mean);
  ops::scale(running_var_, running_var_, 1.0f - m);
  ops::axpy(running_var_, m, unbiased);
  return y;
}

// dx = gamma invstd (dy - mean(dy) - xhat mean(dy xhat)), the means over every rank's batch
// (all-reduced); dgamma and dbeta get this rank's own sums, which data parallelism averages.
// Each rank's dy is of its own mean loss, which data parallelism weights by the rank's share
// n_r / N afterwards; so rank r's sums enter the all-reduce times n_r and the total comes back
// divided by this rank's n (the global loss's sums, in this rank's units). With equal shares
// that is the plain sum; with a short last batch cut unevenly it keeps dx exact.
Tensor BatchNorm1d::sync_backward(const Tensor& dy) {
  const std::int64_t n = input_.dim(0), c = features_, inner = inner_of(input_);
  const Device dev = input_.device();
  const Tensor xf = input_.as(DType::kF32), dyf = dy.as(DType::kF32);
  const Tensor ones = Tensor::full({c}, 1.0, DType::kF32, dev), zeros = Tensor::zeros({c}, DType::kF32, dev);
  Tensor xhat = Tensor::empty(xf.shape(), DType::kF32, dev);
  channel_affine(xhat, xf, save_mean_, save_invstd_, ones, zeros);
  Tensor sums = Tensor::empty({2 * c}, DType::kF32, dev);
  ops::copy(sums.slice(0, c), channel_sums(dyf, n, c, inner));
  ops::copy(sums.slice(c, 2 * c), channel_sums(ops::mul(dyf, xhat), n, c, inner));
  ops::add(beta_.grad, beta_.grad, sums.slice(0, c));
  ops::add(gamma_.grad, gamma_.grad, sums.slice(c, 2 * c));
  const float local = static_cast<float>(n * inner);
  ops::scale(sums, sums, local);
  dist::group(dev).all_reduce(sums);
  ops::scale(sums, sums, 1.0f / local);
  const Tensor a = ops::mul(gamma_.value, save_invstd_);
  const Tensor mean_dy = ops::div(sums.slice(0, c), sync_count_);
  const Tensor b = ops::mul(a, ops::div(sums.slice(c, 2 * c), sync_count_));
  Tensor t = Tensor::empty(xf.shape(), DType::kF32, dev), u = Tensor::empty(xf.shape(), DType::kF32, dev);
  channel_affine(t, dyf, mean_dy, a, ones, zeros);
  channel_affine(u, xhat, zeros, b, ones, zeros);
  ops::sub(t, t, u);
  return t.as(input_.dtype());
}

Tensor BatchNorm1d::forward(const Tensor& x) {
  require_float(x);
  const std::int64_t inner = inner_of(x);
  if (training_ && x.dim(0) * inner < 2) {
    // Synchronised too: every rank's part of the batch must have two values per channel.
    throw ShapeError(describe() + ": train mode needs more than one value per channel, got " + x.shape().str());
  }
  // The shortcut is this forward's only: a stale one must never be added to another batch.
  const Tensor residual = std::move(residual_);
  residual_ = Tensor();
  if (takes_residual_ && !residual.defined()) {
    throw ValueError(describe() + ": fused with a Residual's shortcut, so it runs inside that Residual only");
  }
  if (residual.defined() && residual.shape() != x.shape()) {
    throw ShapeError("Residual: main branch gives " + x.shape().str() + " but the shortcut gives " +
                     residual.shape().str());
  }
  Tensor y;
  if (training_ && options_.sync) {
    // The synchronised statistics are several steps; the epilogue follows them unfused.
    input_ = x;
    y = sync_forward(x, inner);
    if (residual.defined()) ops::add(y, y, residual);
    if (relu_) nn::activation_forward(y, y, nn::Activation::kRelu, 0.0f);
  } else {
    y = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (training_) {
      save_mean_ = Tensor::empty({features_}, DType::kF32, x.device());
      save_invstd_ = Tensor::empty({features_}, DType::kF32, x.device());
      nn::batchnorm_forward_train(y, save_mean_, save_invstd_, running_mean_, running_var_, x, gamma_.value,
                                  beta_.value, options_.eps, options_.momentum,
                                  scratch_for(x.device(), x.dim(0), features_, inner), residual, relu_);
      input_ = x;
    } else {
      nn::batchnorm_forward_eval(y, x, running_mean_, running_var_, gamma_.value, beta_.value, options_.eps, residual,
                                 relu_);
      input_ = Tensor();
    }
  }
  if (training_) ops::count_up(num_batches_tracked_);
  output_ = training_ && relu_ ? y : Tensor();
  return y;
}

Tensor BatchNorm1d::backward(const Tensor& grad_output) {
  require_forward(input_.defined());
  require_grad_shape(grad_output, input_.shape());
  Tensor dx;
  if (options_.sync) {
    Tensor g = grad_output;
    if (relu_) {
      g = Tensor::empty(grad_output.shape(), grad_output.dtype(), grad_output.device());
      nn::activation_backward(g, grad_output, output_, output_, nn::Activation::kRelu, 0.0f);
    }
    if (takes_residual_) residual_grad_ = g;
    dx = sync_backward(g);
  } else {
    dx = Tensor::empty(input_.shape(), input_.dtype(), input_.device());
    if (takes_residual_) residual_grad_ = Tensor::empty(input_.shape(), input_.dtype(), input_.device());
    nn::batchnorm_backward(dx, gamma_.grad, beta_.grad, grad_output, input_, save_mean_, save_invstd_, gamma_.value,
                           scratch_for(dx.device(), input_.dim(0), features_, inner_of(input_)), output_,
                           residual_grad_, relu_);
  }
  input_ = Tensor();
  output_ = Tensor();
  return dx;
}

// Inference on the running statistics; the fused shortcut and ReLU follow as their own nodes.
OnnxValue BatchNorm1d::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  const std::string prefix = onnx_name_prefix(gamma_);
  std::string y = graph.op("BatchNormalization",
                           {x.name, graph.weight(gamma_), graph.weight(beta_),
                            graph.weight(prefix + "running_mean", running_mean_),
                            graph.weight(prefix + "running_var", running_var_)},
                           {{"epsilon", options_.eps}});
  if (takes_residual_) y = graph.op("Add", {y, graph.pop_shortcut(describe())});
  if (relu_) y = graph.op("Relu", {y});
  return {y, x.rank};
}

}  // namespace gpudl
