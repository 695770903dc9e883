// MaxPool2d, AvgPool2d and GlobalAvgPool through the pooling kernels.
#include "gpudl/layers/pool.h"

#include <limits>
#include <utility>


namespace gpudl {

namespace {

std::string window_text(std::int64_t kernel) { return std::to_string(kernel) + "x" + std::to_string(kernel); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Pool2d

Pool2d::Pool2d(std::string name, std::int64_t kernel, std::optional<std::int64_t> stride, std::int64_t padding)
    : name_(std::move(name)), kernel_(kernel), stride_(stride.value_or(kernel)), padding_(padding) {
  if (kernel_ < 1 || stride_ < 1 || padding_ < 0 || padding_ > kernel_ / 2) {
    throw ValueError(describe() + ": need kernel >= 1, stride >= 1 and 0 <= padding <= kernel / 2");
  }
}

std::string Pool2d::describe() const {
  std::string s = name_ + "(" + std::to_string(kernel_) + ", stride=" + std::to_string(stride_);
  if (padding_ != 0) s += ", padding=" + std::to_string(padding_);
  return s + ")";
}

Shape Pool2d::output_shape(const Shape& input) const {
  if (input.ndim() != 3) throw ShapeError(describe() + ": expected input (C, H, W), got " + input.str());
  const nn::PoolGeometry g = geometry(1, input[0], input[1], input[2], input);
  return Shape{input[0], g.out_h(), g.out_w()};
}

std::int64_t Pool2d::flops(const Shape& input) const { return output_shape(input).numel() * kernel_ * kernel_; }

nn::PoolGeometry Pool2d::geometry_for(const Shape& x) const {
  if (x.ndim() != 4) throw ShapeError(describe() + ": expected input (N, C, H, W), got " + x.str());
  return geometry(x[0], x[1], x[2], x[3], x);
}

nn::PoolGeometry Pool2d::geometry(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                                       const Shape& shown) const {
  const nn::PoolGeometry g{.n = n,
                                .c = c,
                                .h = h,
                                .w = w,
                                .kernel_h = kernel_,
                                .kernel_w = kernel_,
                                .stride_h = stride_,
                                .stride_w = stride_,
                                .pad_h = padding_,
                                .pad_w = padding_};
  // The constructor checked everything else valid() asks for; only the input size is left.
  if (!g.valid()) {
    throw ShapeError(describe() + ": the " + window_text(kernel_) + " window does not fit input " + shown.str());
  }
  // The winners' indices are kept as i32 within a plane.
  if (h * w > std::numeric_limits<std::int32_t>::max()) {
    throw ShapeError(describe() + ": input " + shown.str() + " has planes of more than 2^31 - 1 elements");
  }
  return g;
}

void Pool2d::check_backward(const Tensor& grad_output) const {
  require_forward(has_forward_);
  require_grad_shape(grad_output, Shape{geometry_.n, geometry_.c, geometry_.out_h(), geometry_.out_w()});
  require_float(grad_output);
}

// ---------------------------------------------------------------------------------------------
// MaxPool2d

MaxPool2d::MaxPool2d(std::int64_t kernel, std::optional<std::int64_t> stride, std::int64_t padding)
    : Pool2d("MaxPool2d", kernel, stride, padding) {}

Tensor MaxPool2d::forward(const Tensor& x) {
  const nn::PoolGeometry g = geometry_for(x.shape());
  require_float(x);
  const Shape out{g.n, g.c, g.out_h(), g.out_w()};
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  Tensor argmax = Tensor::empty(out, DType::kI32, x.device());
  nn::max_pool_forward(y, argmax, x, g);
  geometry_ = g;
  argmax_ = training_ ? argmax : Tensor();
  has_forward_ = training_;
  return y;
}

Tensor MaxPool2d::backward(const Tensor& grad_output) {
  check_backward(grad_output);
  const nn::PoolGeometry& g = geometry_;
  Tensor dx = Tensor::empty({g.n, g.c, g.h, g.w}, grad_output.dtype(), grad_output.device());
  nn::max_pool_backward(dx, grad_output, argmax_, g);
  argmax_ = Tensor();
  has_forward_ = false;
  return dx;
}

// ---------------------------------------------------------------------------------------------
// AvgPool2d

AvgPool2d::AvgPool2d(std::int64_t kernel, std::optional<std::int64_t> stride, std::int64_t padding)
    : Pool2d("AvgPool2d", kernel, stride, padding) {}

Tensor AvgPool2d::forward(const Tensor& x) {
  const nn::PoolGeometry g = geometry_for(x.shape());
  require_float(x);
  Tensor y = Tensor::empty({g.n, g.c, g.out_h(), g.out_w()}, x.dtype(), x.device());
  nn::avg_pool_forward(y, x, g);
  geometry_ = g;
  has_forward_ = training_;
  return y;
}

Tensor AvgPool2d::backward(const Tensor& grad_output) {
  check_backward(grad_output);
  const nn::PoolGeometry& g = geometry_;
  Tensor dx = Tensor::empty({g.n, g.c, g.h, g.w}, grad_output.dtype(), grad_output.device());
  nn::avg_pool_backward(dx, grad_output, g);
  has_forward_ = false;
  return dx;
}

// ---------------------------------------------------------------------------------------------
// GlobalAvgPool

Shape GlobalAvgPool::output_shape(const Shape& input) const {
  if (input.ndim() != 3 || input[1] * input[2] == 0) {
    throw ShapeError("GlobalAvgPool: expected input (C, H, W) with H, W >= 1, got " + input.str());
  }
  return Shape{input[0]};
}

std::int64_t GlobalAvgPool::flops(const Shape& input) const {
  output_shape(input);
  return input.numel();
}

Tensor GlobalAvgPool::forward(const Tensor& x) {
  if (x.ndim() != 4 || x.dim(2) * x.dim(3) == 0) {
    throw ShapeError("GlobalAvgPool: expected input (N, C, H, W) with H, W >= 1, got " + x.shape().str());
  }
  require_float(x);
  Tensor y = Tensor::empty({x.dim(0), x.dim(1)}, x.dtype(), x.device());
  nn::global_avg_pool_forward(y, x);
  input_shape_ = x.shape();
  has_forward_ = training_;
  return y;
}

Tensor GlobalAvgPool::backward(const Tensor& grad_output) {
  require_forward(has_forward_);
  require_grad_shape(grad_output, Shape{input_shape_[0], input_shape_[1]});
  require_float(grad_output);
  Tensor dx = Tensor::empty(input_shape_, grad_output.dtype(), grad_output.device());
  nn::global_avg_pool_backward(dx, grad_output);
  has_forward_ = false;
  return dx;
}

namespace {

std::vector<OnnxAttribute> pool_attributes(std::int64_t kernel, std::int64_t stride, std::int64_t padding) {
  using Ints = std::vector<std::int64_t>;
  return {{"kernel_shape", Ints{kernel, kernel}},
          {"strides", Ints{stride, stride}},
          {"pads", Ints{padding, padding, padding, padding}}};
}

}  // namespace

OnnxValue MaxPool2d::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  return {graph.op("MaxPool", {x.name}, pool_attributes(kernel_, stride_, padding_)), x.rank};
}

// Padding counts as zeros in the mean, as avg_pool_window divides by the whole window.
OnnxValue AvgPool2d::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  std::vector<OnnxAttribute> attributes = pool_attributes(kernel_, stride_, padding_);
  attributes.push_back({"count_include_pad", std::int64_t{1}});
  return {graph.op("AveragePool", {x.name}, attributes), x.rank};
}

// ONNX keeps the 1 x 1 plane; this layer's output is (N, C).
OnnxValue GlobalAvgPool::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  return {graph.op("Flatten", {graph.op("GlobalAveragePool", {x.name})}, {{"axis", std::int64_t{1}}}), 2};
}

}  // namespace gpudl
