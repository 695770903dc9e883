// TimeDelay through the convolution kernels: a (1 × taps) kernel over (N, C, 1, T).
#include "gpudl/layers/time_delay.h"

#include <string>

#include "gpudl/core/runtime/init.h"
#include "gpudl/core/nn/conv.h"

namespace gpudl {
namespace {

nn::ConvGeometry geometry(const Tensor& x, std::int64_t out, std::int64_t taps, std::int64_t dilation) {
  nn::ConvGeometry g{x.dim(0), x.dim(1), 1, x.dim(2), out, 1, taps};
  g.dilation_w = dilation;
  return g;
}

}  // namespace

TimeDelay::TimeDelay(std::int64_t in_channels, std::int64_t out_channels, std::int64_t taps, std::int64_t dilation,
                     Generator* generator)
    : in_(in_channels), out_(out_channels), taps_(taps), dilation_(dilation) {
  if (in_ < 1 || out_ < 1 || taps_ < 1 || dilation_ < 1) {
    throw ValueError(describe() + ": channel counts, taps and dilation must be >= 1");
  }
  Generator& gen = generator != nullptr ? *generator : default_generator();
  weight_ = make_parameter("weight", {out_, in_, taps_}, device_);
  init::fill(weight_.value, init::Scheme::kDefault, in_ * taps_, out_ * taps_, gen);
  bias_ = make_parameter("bias", {out_}, device_);
  init::fill(bias_.value, init::Scheme::kDefault, in_ * taps_, out_ * taps_, gen);
}

std::string TimeDelay::describe() const {
  return "TimeDelay(" + std::to_string(in_) + ", " + std::to_string(out_) + ", taps=" + std::to_string(taps_) +
         (dilation_ != 1 ? ", dilation=" + std::to_string(dilation_) : "") + ")";
}

Shape TimeDelay::output_shape(const Shape& input) const {
  if (input.ndim() != 2 || input[0] != in_ || input[1] < span()) {
    throw ShapeError(describe() + ": expected a sample (" + std::to_string(in_) + ", T) with T >= " +
                     std::to_string(span()) + ", got " + input.str());
  }
  return Shape{out_, input[1] - span() + 1};
}

std::int64_t TimeDelay::flops(const Shape& input) const {
  const Shape out = output_shape(input);
  return out[1] * out_ * (2 * in_ * taps_ + 1);
}

Tensor TimeDelay::forward(const Tensor& x) {
  require_float(x);
  if (x.ndim() != 3) throw ShapeError(describe() + ": expected input (N, in, T), got " + x.shape().str());
  if (x.device() != device_) {
    throw DeviceError(describe() + ": input on " + x.device().str() + " but parameters on " + device_.str());
  }
  const Shape sample = output_shape(Shape{x.dim(1), x.dim(2)});
  const DType cd = activation_dtype(precision_);
  const Tensor xc = x.as(cd), wc = weight_.value.as(cd);
  Tensor y = Tensor::empty({x.dim(0), sample[0], sample[1]}, cd, x.device());
  const nn::ConvOptions o{.allow_tf32 = allows_tf32(precision_)};
  nn::conv2d_forward(describe(), y, xc, wc, bias_.value, geometry(x, out_, taps_, dilation_), o);
  input_ = training_ ? xc : Tensor();
  weight_c_ = training_ ? wc : Tensor();
  input_dtype_ = x.dtype();
  return y;
}

Tensor TimeDelay::backward(const Tensor& grad_output) {
  require_forward(input_.defined());
  require_grad_shape(grad_output, Shape{input_.dim(0), out_, input_.dim(2) - span() + 1});
  const DType cd = input_.dtype();
  Tensor dx = Tensor::empty(input_.shape(), cd, input_.device());
  const nn::ConvOptions o{.allow_tf32 = allows_tf32(precision_)};
  nn::conv2d_backward(describe(), dx, weight_.grad, bias_.grad, grad_output.as(cd), input_, weight_c_,
                      geometry(input_, out_, taps_, dilation_), o);
  input_ = weight_c_ = Tensor();
  return dx.as(input_dtype_);
}

// A one-dimensional convolution over (N, in, T).
OnnxValue TimeDelay::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  using Ints = std::vector<std::int64_t>;
  return {graph.op("Conv", {x.name, graph.weight(weight_), graph.weight(bias_)},
                   {{"kernel_shape", Ints{taps_}},
                    {"dilations", Ints{dilation_}},
                    {"strides", Ints{1}},
                    {"pads", Ints{0, 0}}}),
          x.rank};
}

}  // namespace gpudl
