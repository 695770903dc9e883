// Residual block: the main branch plus an identity or projected shortcut.
#include "gpudl/layers/residual.h"

#include "gpudl/core/nn/activation.h"
#include "gpudl/core/runtime/ops.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/sequential.h"

namespace gpudl {

namespace {

// The batch norm that ends `m` and can take a shortcut before its activation: not one that
// already applies ReLU (ReLU then sum is another function) or already takes a shortcut.
BatchNorm1d* fusable_batchnorm(Module& m) {
  if (auto* bn = dynamic_cast<BatchNorm1d*>(&m)) return bn->options().relu || bn->takes_residual() ? nullptr : bn;
  if (auto* seq = dynamic_cast<Sequential*>(&m); seq != nullptr && seq->size() > 0) {
    return fusable_batchnorm((*seq)[seq->size() - 1]);
  }
  return nullptr;
}

}  // namespace

Residual::Residual(std::unique_ptr<Module> main, std::unique_ptr<Module> shortcut, ResidualOptions options)
    : main_(std::move(main)), shortcut_(std::move(shortcut)), options_(options) {
  if (!main_) throw ValueError("Residual: null main branch");
  fused_ = fusable_batchnorm(*main_);
  if (fused_ != nullptr) fused_->fuse_residual(options_.relu);
  // The names optimizers key by are fixed here, once, as Sequential::add does.
  for (Parameter* p : main_->parameters()) p->name = "main." + p->name;
  if (shortcut_) {
    for (Parameter* p : shortcut_->parameters()) p->name = "shortcut." + p->name;
  }
  // The sum's input gradient needs both branches' (whatever the Residual's own setting, which
  // only tells a container around it that it may stop here).
  main_->set_input_grad(true);
  if (shortcut_) shortcut_->set_input_grad(true);
}

std::string Residual::describe() const {
  return "Residual(" + main_->describe() + (shortcut_ ? ", " + shortcut_->describe() : "") +
         (options_.relu ? ", relu" : "") + ")";
}

Shape Residual::output_shape(const Shape& input) const {
  const Shape a = main_->output_shape(input);
  const Shape b = shortcut_ ? shortcut_->output_shape(input) : input;
  if (a != b) {
    throw ShapeError("Residual: main branch gives " + a.str() + " but the shortcut gives " + b.str() + " for input " +
                     input.str());
  }
  return a;
}

std::int64_t Residual::flops(const Shape& input) const {
  return main_->flops(input) + (shortcut_ ? shortcut_->flops(input) : 0) +
         (options_.relu ? 2 : 1) * main_->output_shape(input).numel();
}

Tensor Residual::forward(const Tensor& x) {
  if (fused_ != nullptr) {
    // The batch norm that ends the main branch adds the shortcut (and applies ReLU) itself.
    fused_->set_residual(shortcut_ ? shortcut_->forward(x) : x);
    return main_->forward(x);
  }
  const Tensor a = main_->forward(x);
  const Tensor b = shortcut_ ? shortcut_->forward(x) : x;
  if (a.shape() != b.shape()) {
    throw ShapeError("Residual: main branch gives " + a.shape().str() + " but the shortcut gives " + b.shape().str());
  }
  Tensor y = ops::add(a, b);
  if (options_.relu) nn::activation_forward(y, y, nn::Activation::kRelu, 0.0f);
  output_ = options_.relu && training_ ? y : Tensor();
  return y;
}

Tensor Residual::backward(const Tensor& grad_output) {
  Tensor g = grad_output;
  if (fused_ == nullptr && options_.relu) {
    require_forward(output_.defined());
    g = Tensor::empty(grad_output.shape(), grad_output.dtype(), grad_output.device());
    nn::activation_backward(g, grad_output, output_, output_, nn::Activation::kRelu, 0.0f);
    output_ = Tensor();
  }
  Tensor dx = main_->backward(g);
  main_->backward_done();
  // Fused, the batch norm has left the sum's gradient (after its ReLU) for the shortcut.
  Tensor ds = fused_ != nullptr ? fused_->take_residual_grad() : g;
  if (shortcut_) {
    ds = shortcut_->backward(ds);
    shortcut_->backward_done();
  }
  // dx is a fresh tensor from the branch, so it can take the shortcut's gradient in place;
  // a branch that passes its gradient through unchanged would alias its input, so copy then.
  if (dx.raw() == g.raw() || dx.raw() == grad_output.raw()) dx = dx.clone();
  ops::add(dx, dx, ds);
  return dx;
}

std::vector<Parameter*> Residual::parameters() {
  std::vector<Parameter*> out = main_->parameters();
  if (shortcut_) {
    for (Parameter* p : shortcut_->parameters()) out.push_back(p);
  }
  return out;
}

std::vector<std::pair<std::string, Parameter*>> Residual::named_parameters() {
  std::vector<std::pair<std::string, Parameter*>> out;
  for (auto& [n, p] : main_->named_parameters()) out.emplace_back("main." + n, p);
  if (shortcut_) {
    for (auto& [n, p] : shortcut_->named_parameters()) out.emplace_back("shortcut." + n, p);
  }
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Residual::buffers() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& [n, t] : main_->buffers()) out.emplace_back("main." + n, t);
  if (shortcut_) {
    for (auto& [n, t] : shortcut_->buffers()) out.emplace_back("shortcut." + n, t);
  }
  return out;
}

std::string Residual::capture_blocker() const {
  if (std::string why = main_->capture_blocker(); !why.empty()) return why;
  return shortcut_ ? shortcut_->capture_blocker() : "";
}

std::vector<Generator*> Residual::generators() {
  std::vector<Generator*> out = main_->generators();
  if (shortcut_) {
    for (Generator* g : shortcut_->generators()) out.push_back(g);
  }
  return out;
}

void Residual::to(Device device) {
  main_->to(device);
  if (shortcut_) shortcut_->to(device);
  device_ = device;
}

void Residual::set_training(bool training) {
  training_ = training;
  main_->set_training(training);
  if (shortcut_) shortcut_->set_training(training);
}

void Residual::set_backward_hook(BackwardHook hook) {
  main_->set_backward_hook(hook);
  if (shortcut_) shortcut_->set_backward_hook(hook);
  Module::set_backward_hook(std::move(hook));
}

void Residual::set_precision(Precision p) {
  Module::set_precision(p);
  main_->set_precision(p);
  if (shortcut_) shortcut_->set_precision(p);
}

OnnxValue Residual::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  const std::string shortcut = shortcut_ ? shortcut_->to_onnx(graph, x).name : x.name;
  if (fused_ != nullptr) {
    // The main branch's last batch norm adds the shortcut (and applies the ReLU), as in forward.
    graph.push_shortcut(shortcut);
    return main_->to_onnx(graph, x);
  }
  std::string y = graph.op("Add", {main_->to_onnx(graph, x).name, shortcut});
  if (options_.relu) y = graph.op("Relu", {y});
  return {y, x.rank};
}

}  // namespace gpudl
