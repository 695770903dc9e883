// The losses: contract checks, then one fused kernel each.
#include "gpudl/layers/losses.h"

#include <algorithm>
#include <vector>

#include "gpudl/core/runtime/format.h"

namespace gpudl {

namespace {
void check_pair(const Tensor& output, const Tensor& target, const std::string& loss) {
  if (!output.defined()) throw ValueError(loss + ": the output is an undefined tensor");
  const DType t = output.dtype();
  if (!is_floating(t)) {
    throw ValueError(loss + ": expected an f32, bf16 or f16 output, got " + dtype_name(t));
  }
  if (output.device() != target.device()) {
    throw DeviceError(loss + ": output on " + output.device().str() + " but target on " + target.device().str());
  }
}
}  // namespace

ElementwiseLoss::ElementwiseLoss(nn::ElementLossKind kind, float margin, bool counts, std::string name)
    : kind_(kind), margin_(margin), counts_(counts), name_(std::move(name)) {}

// Losses compute in FP32 whatever the model's precision (a bf16 output is widened, exactly), and
// their gradient is FP32: the layer before casts it to its own type.
Tensor ElementwiseLoss::forward(const Tensor& model_output, const Tensor& target) {
  check_pair(model_output, target, name_);
  const Tensor output = model_output.as(DType::kF32);
  target.check_dtype(DType::kF32, name_.c_str());
  if (output.shape() != target.shape()) {
    throw ShapeError(name_ + ": output " + output.shape().str() + " and target " + target.shape().str() + " differ");
  }
  const Device d = output.device();
  Tensor loss = Tensor::zeros({1}, DType::kF32, d);
  correct_ = Tensor::zeros({1}, DType::kF32, d);
  grad_ = Tensor::empty(output.shape(), DType::kF32, d);
  const float scale = output.numel() == 0 ? 0.0f : 1.0f / static_cast<float>(output.numel());
  nn::element_loss(loss, correct_, grad_, output, target, kind_, margin_, scale, scale);
  return loss;
}

Tensor ElementwiseLoss::backward() {
  if (!grad_.defined()) throw Error(name_ + ": backward called before forward");
  return grad_;
}

MarginLoss::MarginLoss(float margin)
    : ElementwiseLoss(nn::ElementLossKind::kMargin, margin, true, "MarginLoss(" + format_number(margin) + ")") {}

CrossEntropyLoss::CrossEntropyLoss(CrossEntropyOptions options) : options_(options) {
  if (!(options.label_smoothing >= 0.0f && options.label_smoothing < 1.0f)) {
    throw ValueError("CrossEntropyLoss: label_smoothing must be in [0, 1), got " +
                     format_number(options.label_smoothing));
  }
}

std::string CrossEntropyLoss::describe() const {
  return options_.label_smoothing > 0.0f
             ? "CrossEntropyLoss(label_smoothing=" + format_number(options_.label_smoothing) + ")"
             : "CrossEntropyLoss";
}

Tensor CrossEntropyLoss::forward(const Tensor& model_output, const Tensor& target) {
  check_pair(model_output, target, "CrossEntropyLoss");
  const Tensor output = model_output.as(DType::kF32);
  target.check_dtype(DType::kI64, "CrossEntropyLoss target");
  // Logits (..., C) with labels (...): a sequence model's (T, B, C) against (T, B) is the
  // mean over every time step and sequence.
  const std::vector<std::int64_t>& od = output.shape().dims();
  const bool fits = output.ndim() >= 2 && target.ndim() == output.ndim() - 1 &&
                    std::equal(target.shape().dims().begin(), target.shape().dims().end(), od.begin());
  if (!fits) {
    throw ShapeError("CrossEntropyLoss: expected logits (N, C) and labels (N), or (..., C) and (...), got " +
                     output.shape().str() + " and " + target.shape().str());
  }
  const std::int64_t classes = od.back(), rows = target.numel();
  const Device d = output.device();
  Tensor loss = Tensor::zeros({1}, DType::kF32, d);
  correct_ = Tensor::zeros({1}, DType::kF32, d);
  grad_ = Tensor::empty(output.shape(), DType::kF32, d);
  const float scale = rows == 0 ? 0.0f : 1.0f / static_cast<float>(rows);
  nn::cross_entropy(loss, correct_, grad_.reshape({rows, classes}), output.reshape({rows, classes}),
                    target.reshape({rows}), options_.label_smoothing, scale, scale);
  return loss;
}

Tensor CrossEntropyLoss::backward() {
  if (!grad_.defined()) throw Error("CrossEntropyLoss: backward called before forward");
  return grad_;
}

}  // namespace gpudl
