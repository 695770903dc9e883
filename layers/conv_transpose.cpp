// ConvTranspose2d through the convolution kernels: its forward is the data gradient of the
// convolution it transposes, its backward that convolution and its weight gradient.
#include "gpudl/layers/conv_transpose.h"

#include <algorithm>
#include <string>

#include "gpudl/core/nn/conv.h"
#include "gpudl/core/nn/elementwise.h"

namespace gpudl {
namespace {

std::string signature(std::int64_t in, std::int64_t out, std::int64_t kernel, const ConvTranspose2dOptions& o) {
  std::string s = "ConvTranspose2d(" + std::to_string(in) + ", " + std::to_string(out) + ", " +
                  std::to_string(kernel) + ", stride=" + std::to_string(o.stride) +
                  ", padding=" + std::to_string(o.padding);
  if (o.output_padding != 0) s += ", output_padding=" + std::to_string(o.output_padding);
  if (o.dilation != 1) s += ", dilation=" + std::to_string(o.dilation);
  if (o.groups != 1) s += ", groups=" + std::to_string(o.groups);
  if (!o.bias) s += ", bias=false";
  return s + ")";
}

// x (n, c, h, w) in the top-left corner of zeros (n, c, hp, wp), a row of every plane at a time.
Tensor pad_bottom_right(const Tensor& x, std::int64_t hp, std::int64_t wp) {
  const std::int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  Tensor out = Tensor::zeros({x.dim(0), x.dim(1), hp, wp}, x.dtype(), x.device());
  if (planes == 0) return out;
  for (std::int64_t r = 0; r < h; ++r) nn::copy_columns(out, r * wp, x, r * w, w, planes);
  return out;
}

// The top-left (h, w) corner of every plane of x (n, c, hp, wp): pad_bottom_right's adjoint.
Tensor crop(const Tensor& x, std::int64_t h, std::int64_t w) {
  const std::int64_t planes = x.dim(0) * x.dim(1), wp = x.dim(3);
  Tensor out = Tensor::empty({x.dim(0), x.dim(1), h, w}, x.dtype(), x.device());
  if (planes == 0) return out;
  for (std::int64_t r = 0; r < h; ++r) nn::copy_columns(out, r * w, x, r * wp, w, planes);
  return out;
}

}  // namespace

ConvTranspose2d::ConvTranspose2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size,
                                 ConvTranspose2dOptions options)
    : in_(in_channels),
      out_(out_channels),
      kernel_(kernel_size),
      stride_(options.stride),
      padding_(options.padding),
      output_padding_(options.output_padding),
      dilation_(options.dilation),
      groups_(options.groups),
      has_bias_(options.bias),
      deterministic_(options.deterministic),
      allow_tf32_(options.allow_tf32) {
  const std::string what = signature(in_, out_, kernel_, options);
  if (in_ < 1 || out_ < 1 || kernel_ < 1) {
    throw ValueError(what + ": channel counts and kernel size must be >= 1");
  }
  if (stride_ < 1 || dilation_ < 1 || groups_ < 1 || padding_ < 0 || output_padding_ < 0) {
    throw ValueError(what + ": stride, dilation and groups must be >= 1, padding and output_padding >= 0");
  }
  if (output_padding_ >= stride_ && output_padding_ >= dilation_) {
    throw ValueError(what + ": output_padding must be smaller than the stride or the dilation");
  }
  if (in_ % groups_ != 0 || out_ % groups_ != 0) {
    throw ValueError(what + ": groups must divide both in_channels and out_channels");
  }
  Generator& gen = options.generator != nullptr ? *options.generator : default_generator();
  // PyTorch's fans for this weight (in, out / groups, k, k): fan_in from its second axis.
  const std::int64_t fan_in = out_ / groups_ * kernel_ * kernel_, fan_out = in_ * kernel_ * kernel_;
  weight_ = make_parameter("weight", {in_, out_ / groups_, kernel_, kernel_}, device_);
  init::fill(weight_.value, options.init, fan_in, fan_out, gen);
  if (has_bias_) {
    bias_ = make_parameter("bias", {out_}, device_);
    init::fill(bias_.value, init::Scheme::kDefault, fan_in, fan_out, gen);
  }
}

std::string ConvTranspose2d::describe() const {
  return signature(in_, out_, kernel_,
                   {.stride = stride_, .padding = padding_, .output_padding = output_padding_,
                    .dilation = dilation_, .groups = groups_, .bias = has_bias_});
}

Shape ConvTranspose2d::output_shape(const Shape& input) const {
  if (input.ndim() != 3 || input[0] != in_) {
    throw ShapeError(describe() + ": expected a sample (" + std::to_string(in_) + ", H, W), got " + input.str());
  }
  if (input[1] < 1 || input[2] < 1 || out_size(input[1]) < 1 || out_size(input[2]) < 1) {
    throw ShapeError(describe() + ": input " + input.str() + " gives an empty output of " +
                     std::to_string(out_size(input[1])) + "x" + std::to_string(out_size(input[2])));
  }
  return Shape{out_, out_size(input[1]), out_size(input[2])};
}

std::int64_t ConvTranspose2d::flops(const Shape& input) const {
  const Shape out = output_shape(input);
  return 2 * in_ * (out_ / groups_) * kernel_ * kernel_ * input[1] * input[2] + (has_bias_ ? out.numel() : 0);
}

std::vector<Parameter*> ConvTranspose2d::parameters() {
  if (has_bias_) return {&weight_, &bias_};
  return {&weight_};
}

void ConvTranspose2d::update_receptive_field(ReceptiveField& field) const {
  const auto s = static_cast<double>(stride_), reach = static_cast<double>(kernel_extent() - 1);
  field.size += reach / s * field.jump;
  field.start += (static_cast<double>(padding_) - reach / 2.0) / s * field.jump;
  field.jump /= s;
}

namespace {

// The convolution this layer transposes: its input is this layer's output (n, out, oh, ow), its
// output this layer's input; the weights (in, out / groups, k, k) are that convolution's.
nn::ConvGeometry geometry(std::int64_t n, std::int64_t in, std::int64_t out, std::int64_t oh, std::int64_t ow,
                          std::int64_t kernel, std::int64_t stride, std::int64_t padding, std::int64_t dilation,
                          std::int64_t groups) {
  return {n, out, oh, ow, in, kernel, kernel, stride, stride, padding, padding, dilation, dilation, groups};
}

}  // namespace

Tensor ConvTranspose2d::forward(const Tensor& x) {
  if (x.ndim() != 4 || x.dim(1) != in_) {
    throw ShapeError(describe() + ": expected input (N, " + std::to_string(in_) + ", H, W), got " + x.shape().str());
  }
  require_float(x);
  if (x.device() != device_) {
    throw DeviceError(describe() + ": input on " + x.device().str() + " but parameters on " + device_.str());
  }
  const Shape sample = output_shape(Shape{x.dim(1), x.dim(2), x.dim(3)});
  const DType cd = activation_dtype(precision_);
  Tensor xc = x.as(cd);
  const Tensor wc = weight_.value.as(cd);
  const nn::ConvGeometry g =
      geometry(x.dim(0), in_, out_, sample[1], sample[2], kernel_, stride_, padding_, dilation_, groups_);
  // With output_padding >= stride (possible when it is below the dilation) the convolution maps
  // the output to more rows and columns than the input has: those see zeros.
  if (g.out_h() != x.dim(2) || g.out_w() != x.dim(3)) xc = pad_bottom_right(xc, g.out_h(), g.out_w());
  Tensor y = Tensor::empty({x.dim(0), sample[0], sample[1], sample[2]}, cd, x.device());
  const nn::ConvOptions o{deterministic_, allow_tf32_ || allows_tf32(precision_)};
  nn::conv_transpose2d_forward(describe(), y, xc, wc, has_bias_ ? bias_.value : Tensor(), g, o);
  input_ = training_ ? xc : Tensor();
  weight_c_ = training_ ? wc : Tensor();
  input_h_ = x.dim(2);
  input_w_ = x.dim(3);
  input_dtype_ = x.dtype();
  return y;
}

Tensor ConvTranspose2d::backward(const Tensor& grad_output) {
  require_forward(input_.defined());
  const std::int64_t n = input_.dim(0), oh = out_size(input_h_), ow = out_size(input_w_);
  require_grad_shape(grad_output, Shape{n, out_, oh, ow});
  require_float(grad_output);
  if (grad_output.device() != input_.device()) {
    throw DeviceError(describe() + ": gradient on " + grad_output.device().str() + " but input on " +
                      input_.device().str());
  }
  // The parameter gradients accumulate in FP32 from operands in the forward's type.
  const DType cd = input_.dtype();
  Tensor dx = input_grad_ ? Tensor::empty(input_.shape(), cd, input_.device()) : Tensor();
  const nn::ConvGeometry g = geometry(n, in_, out_, oh, ow, kernel_, stride_, padding_, dilation_, groups_);
  const nn::ConvOptions o{deterministic_, allow_tf32_ || allows_tf32(precision_)};
  nn::conv_transpose2d_backward(describe(), dx, weight_.grad, has_bias_ ? bias_.grad : Tensor(),
                                grad_output.as(cd), input_, weight_c_, g, o);
  input_ = weight_c_ = Tensor();
  if (!dx.defined()) return dx;
  if (dx.dim(2) != input_h_ || dx.dim(3) != input_w_) dx = crop(dx, input_h_, input_w_);
  return dx.as(input_dtype_);
}

// ConvTranspose with its attributes as they are. An output_padding at or past the stride
// (allowed below the dilation) is written another way, since onnxruntime (1.20) then drops the
// dilation from the taps' positions: the end padding shrinks by output_padding where it can, Pad
// adds the rest as zeros, and the bias comes after, so those rows get it too.
OnnxValue ConvTranspose2d::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  using Ints = std::vector<std::int64_t>;
  std::vector<OnnxAttribute> attributes{{"kernel_shape", Ints{kernel_, kernel_}},
                                        {"strides", Ints{stride_, stride_}},
                                        {"dilations", Ints{dilation_, dilation_}},
                                        {"group", groups_}};
  std::vector<std::string> inputs{x.name, graph.weight(weight_)};
  if (output_padding_ < stride_) {
    attributes.push_back({"pads", Ints{padding_, padding_, padding_, padding_}});
    attributes.push_back({"output_padding", Ints{output_padding_, output_padding_}});
    if (has_bias_) inputs.push_back(graph.weight(bias_));
    return {graph.op("ConvTranspose", inputs, attributes), x.rank};
  }
  const std::int64_t end = std::max<std::int64_t>(padding_ - output_padding_, 0);
  const std::int64_t extra = std::max<std::int64_t>(output_padding_ - padding_, 0);
  attributes.push_back({"pads", Ints{padding_, padding_, end, end}});
  std::string y = graph.op("ConvTranspose", inputs, attributes);
  if (extra > 0) y = graph.op("Pad", {y, graph.ints("output_padding", {0, 0, 0, 0, 0, 0, extra, extra})});
  if (has_bias_) {
    y = graph.op("Add", {y, graph.weight(bias_.name, {out_, 1, 1}, bias_.value.to(Device::cpu()).to_vector<float>())});
  }
  return {y, x.rank};
}

}  // namespace gpudl
