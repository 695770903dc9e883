// Conv2d through the convolution kernels, with scratch memory from the device context's workspace.
#include "gpudl/layers/conv.h"

#include <string>

#include "gpudl/core/nn/conv.h"

namespace gpudl {
namespace {

std::string signature(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride, std::int64_t padding,
                      std::int64_t dilation, std::int64_t groups, bool bias) {
  std::string s = "Conv2d(" + std::to_string(in) + ", " + std::to_string(out) + ", " + std::to_string(kernel) +
                  ", stride=" + std::to_string(stride) + ", padding=" + std::to_string(padding);
  if (dilation != 1) s += ", dilation=" + std::to_string(dilation);
  if (groups != 1) s += ", groups=" + std::to_string(groups);
  if (!bias) s += ", bias=false";
  return s + ")";
}

}  // namespace

Conv2d::Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size, Conv2dOptions options)
    : in_(in_channels),
      out_(out_channels),
      kernel_(kernel_size),
      stride_(options.stride),
      padding_(options.padding),
      dilation_(options.dilation),
      groups_(options.groups),
      has_bias_(options.bias),
      deterministic_(options.deterministic),
      allow_tf32_(options.allow_tf32) {
  const std::string what = signature(in_, out_, kernel_, stride_, padding_, dilation_, groups_, has_bias_);
  if (in_ < 1 || out_ < 1 || kernel_ < 1) {
    throw ValueError(what + ": channel counts and kernel size must be >= 1");
  }
  if (stride_ < 1 || dilation_ < 1 || groups_ < 1 || padding_ < 0) {
    throw ValueError(what + ": stride, dilation and groups must be >= 1 and padding >= 0");
  }
  if (in_ % groups_ != 0 || out_ % groups_ != 0) {
    throw ValueError(what + ": groups must divide both in_channels and out_channels");
  }
  if (options.same) {
    if (stride_ != 1 || padding_ != 0 || dilation_ * (kernel_ - 1) % 2 != 0) {
      throw ValueError(what + ": \"same\" padding needs stride 1, no explicit padding and an odd kernel");
    }
    padding_ = dilation_ * (kernel_ - 1) / 2;
  }
  Generator& gen = options.generator != nullptr ? *options.generator : default_generator();
  // As PyTorch: fan_in counts the inputs one output sees, fan_out the outputs one input feeds.
  const std::int64_t fan_in = in_ / groups_ * kernel_ * kernel_, fan_out = out_ * kernel_ * kernel_;
  weight_ = make_parameter("weight", {out_, in_ / groups_, kernel_, kernel_}, device_);
  init::fill(weight_.value, options.init, fan_in, fan_out, gen);
  if (has_bias_) {
    bias_ = make_parameter("bias", {out_}, device_);
    init::fill(bias_.value, init::Scheme::kDefault, fan_in, fan_out, gen);
  }
}

std::string Conv2d::describe() const {
  return signature(in_, out_, kernel_, stride_, padding_, dilation_, groups_, has_bias_);
}

Shape Conv2d::output_shape(const Shape& input) const {
  if (input.ndim() != 3 || input[0] != in_) {
    throw ShapeError(describe() + ": expected a sample (" + std::to_string(in_) + ", H, W), got " + input.str());
  }
  const std::int64_t h = input[1] + 2 * padding_, w = input[2] + 2 * padding_;
  if (h < kernel_extent() || w < kernel_extent()) {
    throw ShapeError(describe() + ": kernel extent " + std::to_string(kernel_extent()) +
                     " is larger than the padded input " + std::to_string(h) + "x" + std::to_string(w) + " of " +
                     input.str());
  }
  return Shape{out_, (h - kernel_extent()) / stride_ + 1, (w - kernel_extent()) / stride_ + 1};
}

std::int64_t Conv2d::flops(const Shape& input) const {
  const Shape out = output_shape(input);
  const std::int64_t positions = out[1] * out[2];
  return 2 * out_ * (in_ / groups_) * kernel_ * kernel_ * positions + (has_bias_ ? out_ * positions : 0);
}

std::vector<Parameter*> Conv2d::parameters() {
  if (has_bias_) return {&weight_, &bias_};
  return {&weight_};
}

namespace {

nn::ConvGeometry geometry(const Tensor& x, std::int64_t out, std::int64_t kernel, std::int64_t stride,
                               std::int64_t padding, std::int64_t dilation, std::int64_t groups) {
  return {x.dim(0), x.dim(1), x.dim(2), x.dim(3), out,      kernel,   kernel,
          stride,   stride,   padding,  padding,  dilation, dilation, groups};
}

}  // namespace

Tensor Conv2d::forward(const Tensor& x) {
  if (x.ndim() != 4 || x.dim(1) != in_) {
    throw ShapeError(describe() + ": expected input (N, " + std::to_string(in_) + ", H, W), got " + x.shape().str());
  }
  require_float(x);
  if (x.device() != device_) {
    throw DeviceError(describe() + ": input on " + x.device().str() + " but parameters on " + device_.str());
  }
  const Shape sample = output_shape(Shape{x.dim(1), x.dim(2), x.dim(3)});
  const DType cd = activation_dtype(precision_);
  const Tensor xc = x.as(cd), wc = weight_.value.as(cd);
  Tensor y = Tensor::empty({x.dim(0), sample[0], sample[1], sample[2]}, cd, x.device());
  const nn::ConvGeometry g = geometry(x, out_, kernel_, stride_, padding_, dilation_, groups_);
  const nn::ConvOptions o{deterministic_, allow_tf32_ || allows_tf32(precision_)};
  nn::conv2d_forward(describe(), y, xc, wc, has_bias_ ? bias_.value : Tensor(), g, o);
  input_ = training_ ? xc : Tensor();
  weight_c_ = training_ ? wc : Tensor();
  input_dtype_ = x.dtype();
  return y;
}

Tensor Conv2d::backward(const Tensor& grad_output) {
  require_forward(input_.defined());
  const Shape sample = output_shape(Shape{input_.dim(1), input_.dim(2), input_.dim(3)});
  require_grad_shape(grad_output, Shape{input_.dim(0), sample[0], sample[1], sample[2]});
  require_float(grad_output);
  if (grad_output.device() != input_.device()) {
    throw DeviceError(describe() + ": gradient on " + grad_output.device().str() + " but input on " +
                      input_.device().str());
  }
  // The parameter gradients accumulate in FP32 from operands in the forward's type.
  const DType cd = input_.dtype();
  Tensor dx = input_grad_ ? Tensor::empty(input_.shape(), cd, input_.device()) : Tensor();
  const nn::ConvGeometry g = geometry(input_, out_, kernel_, stride_, padding_, dilation_, groups_);
  const nn::ConvOptions o{deterministic_, allow_tf32_ || allows_tf32(precision_)};
  nn::conv2d_backward(describe(), dx, weight_.grad, has_bias_ ? bias_.grad : Tensor(), grad_output.as(cd), input_,
                      weight_c_, g, o);
  input_ = weight_c_ = Tensor();
  return dx.defined() ? dx.as(input_dtype_) : dx;
}

OnnxValue Conv2d::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  using Ints = std::vector<std::int64_t>;
  std::vector<std::string> inputs{x.name, graph.weight(weight_)};
  if (has_bias_) inputs.push_back(graph.weight(bias_));
  return {graph.op("Conv", inputs,
                   {{"kernel_shape", Ints{kernel_, kernel_}},
                    {"strides", Ints{stride_, stride_}},
                    {"pads", Ints{padding_, padding_, padding_, padding_}},
                    {"dilations", Ints{dilation_, dilation_}},
                    {"group", groups_}}),
          x.rank};
}

}  // namespace gpudl
