// Concat: branch outputs copied side by side along channels; gradients split back the same way.
#include "gpudl/layers/concat.h"

#include <algorithm>

#include "gpudl/core/nn/elementwise.h"
#include "gpudl/core/runtime/ops.h"

namespace gpudl {

std::string Concat::describe() const {
  std::string s = "Concat(";
  for (std::size_t i = 0; i < branches_.size(); ++i) s += (i ? ", " : "") + branches_[i]->describe();
  return s + ")";
}

Shape Concat::output_shape(const Shape& input) const {
  std::vector<std::int64_t> dims;
  for (std::size_t i = 0; i < branches_.size(); ++i) {
    const Shape s = branches_[i]->output_shape(input);
    if (i == 0) {
      dims = s.dims();
      continue;
    }
    std::vector<std::int64_t> rest(s.dims());
    if (rest.empty() || rest.size() != dims.size() || !std::equal(rest.begin() + 1, rest.end(), dims.begin() + 1)) {
      throw ShapeError("Concat: branch " + std::to_string(i) + " gives " + s.str() + ", not joinable with " +
                       Shape(dims).str() + " along channels");
    }
    dims[0] += rest[0];
  }
  return Shape(dims);
}

std::int64_t Concat::flops(const Shape& input) const {
  std::int64_t f = 0;
  for (const auto& b : branches_) f += b->flops(input);
  return f;
}

void Concat::update_receptive_field(ReceptiveField& field) const {
  ReceptiveField widest = field;
  for (const auto& b : branches_) {
    ReceptiveField f = field;
    b->update_receptive_field(f);
    if (f.size > widest.size) widest = f;
  }
  field = widest;
}

Tensor Concat::forward(const Tensor& x) {
  std::vector<Tensor> outs;
  for (auto& b : branches_) outs.push_back(b->forward(x));
  const Tensor& first = outs[0];
  if (first.ndim() < 2) throw ShapeError("Concat: branch 0 gives " + first.shape().str() + ", expected (N, C, ...)");
  std::vector<std::int64_t> dims = first.shape().dims();
  channels_.assign(1, first.dim(1));
  for (std::size_t i = 1; i < outs.size(); ++i) {
    const Shape& s = outs[i].shape();
    std::vector<std::int64_t> a = s.dims(), b = first.shape().dims();
    a[1] = b[1] = 0;
    if (a != b) {
      throw ShapeError("Concat: branch " + std::to_string(i) + " gives " + s.str() + ", not joinable with " +
                       first.shape().str() + " along channels");
    }
    channels_.push_back(s[1]);
    dims[1] += s[1];
  }
  // One type for the joined tensor: the first branch's (a mixed-precision model's branches agree).
  Tensor y = Tensor::empty(Shape(dims), outs[0].dtype(), x.device());
  const std::int64_t n = dims[0];
  std::int64_t offset = 0;
  for (const Tensor& o : outs) {
    const std::int64_t row = o.numel() / std::max<std::int64_t>(n, 1);
    nn::copy_columns(y, offset, o.as(y.dtype()), 0, row, n);
    offset += row;
  }
  if (!training_) channels_.clear();  // an eval-mode forward keeps nothing for backward
  return y;
}

Tensor Concat::backward(const Tensor& grad_output) {
  require_forward(channels_.size() == branches_.size());
  std::int64_t total = 0;
  for (std::int64_t c : channels_) total += c;
  if (grad_output.ndim() < 2 || grad_output.dim(1) != total) {
    throw ShapeError(describe() + ": gradient " + grad_output.shape().str() + " does not have the " +
                     std::to_string(total) + " channels of the output");
  }
  const std::int64_t n = grad_output.dim(0);
  const std::int64_t inner = grad_output.numel() / std::max<std::int64_t>(n * grad_output.dim(1), 1);
  Tensor dx;
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < branches_.size(); ++i) {
    std::vector<std::int64_t> dims = grad_output.shape().dims();
    dims[1] = channels_[i];
    Tensor g = Tensor::empty(Shape(dims), grad_output.dtype(), grad_output.device());
    const std::int64_t row = channels_[i] * inner;
    nn::copy_columns(g, 0, grad_output, offset, row, n);
    offset += row;
    Tensor d = branches_[i]->backward(g);
    branches_[i]->backward_done();
    if (!dx.defined()) {
      dx = d.raw() == g.raw() ? d.clone() : d;
    } else {
      ops::add(dx, dx, d);
    }
  }
  channels_.clear();
  return dx;
}

void Concat::adopt_branches() {
  for (std::size_t i = 0; i < branches_.size(); ++i) {
    for (Parameter* p : branches_[i]->parameters()) p->name = std::to_string(i) + "." + p->name;
    branches_[i]->set_input_grad(true);
  }
}

std::vector<Parameter*> Concat::parameters() {
  std::vector<Parameter*> out;
  for (auto& b : branches_) {
    for (Parameter* p : b->parameters()) out.push_back(p);
  }
  return out;
}

std::vector<std::pair<std::string, Parameter*>> Concat::named_parameters() {
  std::vector<std::pair<std::string, Parameter*>> out;
  for (std::size_t i = 0; i < branches_.size(); ++i) {
    for (auto& [n, p] : branches_[i]->named_parameters()) out.emplace_back(std::to_string(i) + "." + n, p);
  }
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Concat::buffers() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (std::size_t i = 0; i < branches_.size(); ++i) {
    for (auto& [n, t] : branches_[i]->buffers()) out.emplace_back(std::to_string(i) + "." + n, t);
  }
  return out;
}

std::string Concat::capture_blocker() const {
  for (const auto& b : branches_) {
    if (std::string why = b->capture_blocker(); !why.empty()) return why;
  }
  return "";
}

std::vector<Generator*> Concat::generators() {
  std::vector<Generator*> out;
  for (auto& b : branches_) {
    for (Generator* g : b->generators()) out.push_back(g);
  }
  return out;
}

void Concat::to(Device device) {
  for (auto& b : branches_) b->to(device);
  device_ = device;
}

void Concat::set_training(bool training) {
  training_ = training;
  for (auto& b : branches_) b->set_training(training);
}

void Concat::set_backward_hook(BackwardHook hook) {
  for (auto& b : branches_) b->set_backward_hook(hook);
  Module::set_backward_hook(std::move(hook));
}

void Concat::set_precision(Precision p) {
  Module::set_precision(p);
  for (auto& b : branches_) b->set_precision(p);
}

OnnxValue Concat::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  std::vector<std::string> outputs;
  std::size_t rank = x.rank;
  for (auto& branch : branches_) {
    const OnnxValue y = branch->to_onnx(graph, x);
    outputs.push_back(y.name);
    rank = y.rank;
  }
  return {graph.op("Concat", outputs, {{"axis", std::int64_t{1}}}), rank};
}

}  // namespace gpudl
