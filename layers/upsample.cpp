// Upsample through the upsampling kernels, and its ONNX form (Resize).
#include "gpudl/layers/upsample.h"

#include <vector>

namespace gpudl {

Upsample::Upsample(std::int64_t scale_factor, UpsampleMode mode) : scale_(scale_factor), mode_(mode) {
  if (scale_ < 1) throw ValueError(describe() + ": the scale factor must be an integer >= 1");
}

std::string Upsample::describe() const {
  return "Upsample(scale_factor=" + std::to_string(scale_) +
         (mode_ == UpsampleMode::kNearest ? ", mode=nearest)" : ", mode=bilinear)");
}

nn::UpsampleGeometry Upsample::geometry_for(const Shape& x) const {
  if (x.ndim() != 4 || x[2] < 1 || x[3] < 1) {
    throw ShapeError(describe() + ": expected input (N, C, H, W) with H, W >= 1, got " + x.str());
  }
  return {.n = x[0], .c = x[1], .h = x[2], .w = x[3], .scale = scale_, .mode = mode_};
}

Shape Upsample::output_shape(const Shape& input) const {
  if (input.ndim() != 3 || input[1] < 1 || input[2] < 1) {
    throw ShapeError(describe() + ": expected a sample (C, H, W) with H, W >= 1, got " + input.str());
  }
  return Shape{input[0], input[1] * scale_, input[2] * scale_};
}

std::int64_t Upsample::flops(const Shape& input) const {
  const Shape out = output_shape(input);
  return mode_ == UpsampleMode::kNearest ? 0 : 8 * out.numel();
}

void Upsample::update_receptive_field(ReceptiveField& field) const {
  const auto s = static_cast<double>(scale_);
  if (mode_ == UpsampleMode::kBilinear && scale_ > 1) field.size += field.jump;
  field.start += (0.5 / s - 0.5) * field.jump;
  field.jump /= s;
}

Tensor Upsample::forward(const Tensor& x) {
  const nn::UpsampleGeometry g = geometry_for(x.shape());
  require_float(x);
  Tensor y = Tensor::empty({g.n, g.c, g.out_h(), g.out_w()}, x.dtype(), x.device());
  nn::upsample_forward(y, x, g);
  geometry_ = g;
  has_forward_ = training_;
  return y;
}

Tensor Upsample::backward(const Tensor& grad_output) {
  require_forward(has_forward_);
  const nn::UpsampleGeometry& g = geometry_;
  require_grad_shape(grad_output, Shape{g.n, g.c, g.out_h(), g.out_w()});
  require_float(grad_output);
  Tensor dx = Tensor::empty({g.n, g.c, g.h, g.w}, grad_output.dtype(), grad_output.device());
  nn::upsample_backward(dx, grad_output, g);
  has_forward_ = false;
  return dx;
}

// Resize with constant scales; nearest as floor(o / s) ("asymmetric", "floor"), bilinear with
// PyTorch's half-pixel source positions, which onnxruntime clamps at the edges as PyTorch does.
OnnxValue Upsample::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  const auto s = static_cast<float>(scale_);
  const std::string scales = graph.weight("upsample_scales", {4}, {1.0f, 1.0f, s, s});
  std::vector<OnnxAttribute> attributes;
  if (mode_ == UpsampleMode::kNearest) {
    attributes = {{"mode", std::string("nearest")},
                  {"coordinate_transformation_mode", std::string("asymmetric")},
                  {"nearest_mode", std::string("floor")}};
  } else {
    attributes = {{"mode", std::string("linear")},
                  {"coordinate_transformation_mode", std::string("pytorch_half_pixel")}};
  }
  return {graph.op("Resize", {x.name, "", scales}, attributes), x.rank};
}

}  // namespace gpudl
