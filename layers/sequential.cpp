// Sequential container and its summary table.
#include "gpudl/layers/sequential.h"

#include <cstdio>

#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/ops.h"

namespace gpudl {

Sequential& Sequential::add(std::unique_ptr<Module> module) {
  if (!module) throw ValueError("Sequential::add: null module");
  if (module->device() != device_) module->to(device_);
  module->set_training(training_);
  if (module->precision() != precision_) module->set_precision(precision_);
  if (backward_hook_) module->set_backward_hook(backward_hook_);
  // The names optimizers key by are fixed here, once (a nested container has already prefixed
  // its own children's); named_parameters() builds the same names on request from each
  // layer's own, so a child still answers to its names.
  for (Parameter* p : module->parameters()) p->name = std::to_string(children_.size()) + "." + p->name;
  children_.push_back(std::move(module));
  // Every add re-applies the rule, so a module that arrives with its own setting cannot cut a
  // backward short in the middle of the chain.
  apply_input_grad();
  return *this;
}

void Sequential::set_input_grad(bool on) {
  input_grad_ = on;
  apply_input_grad();
}

void Sequential::apply_input_grad() {
  // A child's input needs a gradient when ours does or when a child before it has parameters.
  bool needed = input_grad_;
  stop_ = -1;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    children_[i]->set_input_grad(needed);
    if (!needed) {
      stop_ = static_cast<std::ptrdiff_t>(i);
      if (!children_[i]->parameters().empty()) needed = true;
    }
  }
}

Tensor Sequential::forward(const Tensor& x) {
  // Cheap (one call per child; parameters() only up to the first child that has some), and
  // it catches a nested container that gained parameters, or a child switched on or off
  // directly, since the last add.
  if (!input_grad_) apply_input_grad();
  const bool check = check_finite();
  if (check && !ops::all_finite(x)) throw NonFiniteError("input", describe());
  Tensor h = x;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    try {
      h = children_[i]->forward(h);
    } catch (const NonFiniteError& e) {
      // From a nested container: prefix its path with ours. Its input was our finite h.
      throw NonFiniteError(std::to_string(i) + "." + e.module_path(), e.module());
    }
    if (check && !ops::all_finite(h)) throw NonFiniteError(std::to_string(i), children_[i]->describe());
  }
  return h;
}

Tensor Sequential::backward(const Tensor& grad_output) {
  Tensor g = grad_output;
  for (auto i = static_cast<std::ptrdiff_t>(children_.size()) - 1; i >= 0; --i) {
    Module& child = *children_[static_cast<std::size_t>(i)];
    g = child.backward(g);
    child.backward_done();
    if (i == stop_) return Tensor();  // nothing before it has parameters
    if (!g.defined() && i > 0) {
      throw Error(describe() + ": module " + std::to_string(i) + " (" + child.describe() +
                  ") returned no input gradient, but modules before it need one (set_input_grad(false) "
                  "belongs on the container, which applies it to its leading modules only)");
    }
  }
  return g;
}

std::string Sequential::describe() const { return "Sequential(" + std::to_string(children_.size()) + " modules)"; }

Shape Sequential::output_shape(const Shape& input) const {
  Shape s = input;
  for (const auto& m : children_) s = m->output_shape(s);
  return s;
}

std::int64_t Sequential::flops(const Shape& input) const {
  std::int64_t total = 0;
  Shape s = input;
  for (const auto& m : children_) {
    total += m->flops(s);
    s = m->output_shape(s);
  }
  return total;
}

void Sequential::update_receptive_field(ReceptiveField& field) const {
  for (const auto& m : children_) m->update_receptive_field(field);
}

std::vector<Parameter*> Sequential::parameters() {
  std::vector<Parameter*> out;
  for (auto& child : children_) {
    for (Parameter* p : child->parameters()) out.push_back(p);
  }
  return out;
}

std::vector<std::pair<std::string, Parameter*>> Sequential::named_parameters() {
  std::vector<std::pair<std::string, Parameter*>> out;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    for (auto& [name, p] : children_[i]->named_parameters()) out.emplace_back(std::to_string(i) + "." + name, p);
  }
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Sequential::buffers() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    for (auto& [name, t] : children_[i]->buffers()) out.emplace_back(std::to_string(i) + "." + name, t);
  }
  return out;
}

std::string Sequential::capture_blocker() const {
  for (const auto& child : children_) {
    if (std::string why = child->capture_blocker(); !why.empty()) return why;
  }
  return "";
}

std::vector<Generator*> Sequential::generators() {
  std::vector<Generator*> out;
  for (auto& m : children_) {
    for (Generator* g : m->generators()) out.push_back(g);
  }
  return out;
}

void Sequential::to(Device device) {
  for (auto& m : children_) m->to(device);
  device_ = device;
}

void Sequential::set_training(bool training) {
  training_ = training;
  for (auto& m : children_) m->set_training(training);
}

void Sequential::set_backward_hook(BackwardHook hook) {
  for (auto& m : children_) m->set_backward_hook(hook);
  Module::set_backward_hook(std::move(hook));
}

void Sequential::set_precision(Precision p) {
  Module::set_precision(p);
  for (auto& m : children_) m->set_precision(p);
}

std::string Sequential::summary(const Shape& input) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-4s %-34s %-18s %10s %13s %6s %5s %6s\n", "#", "layer", "output", "params",
                "FLOPs", "RF", "jump", "start");
  out += line;
  Shape s = input;
  ReceptiveField rf;
  std::int64_t total_params = 0, total_flops = 0;
  for (std::size_t i = 0; i < children_.size(); ++i) {
    Module& m = *children_[i];
    const std::int64_t f = m.flops(s);
    s = m.output_shape(s);
    m.update_receptive_field(rf);
    std::int64_t params = 0;
    for (Parameter* p : m.parameters()) params += p->value.numel();
    total_params += params;
    total_flops += f;
    std::string name = m.describe();
    if (name.size() > 34) name = name.substr(0, 31) + "...";
    std::snprintf(line, sizeof line, "%-4zu %-34s %-18s %10lld %13lld %6g %5g %6g\n", i, name.c_str(),
                  s.str().c_str(), static_cast<long long>(params), static_cast<long long>(f), rf.size, rf.jump,
                  rf.start);
    out += line;
  }
  std::snprintf(line, sizeof line, "input %s -> output %s: %lld parameters, %lld FLOPs per sample\n",
                input.str().c_str(), s.str().c_str(), static_cast<long long>(total_params),
                static_cast<long long>(total_flops));
  return out + line;
}

OnnxValue Sequential::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  OnnxValue y = x;
  for (auto& child : children_) y = child->to_onnx(graph, y);
  return y;
}

}  // namespace gpudl
