// Module's shared behaviour: state for checkpoints, moving between devices, zeroing gradients.
#include "gpudl/core/runtime/module.h"

#include <map>
#include <set>

#include "gpudl/core/detail/env_flag.h"
#include "gpudl/core/runtime/ops.h"

namespace gpudl {

namespace {
detail::EnvFlag& check_finite_flag() {
  static detail::EnvFlag flag("GPUDL_CHECK_FINITE");
  return flag;
}
}  // namespace

void set_check_finite(bool on) { check_finite_flag().set(on); }
bool check_finite() { return check_finite_flag().get(); }

void Module::set_precision(Precision p) {
  check_precision(p, device_);
  precision_ = p;
}

std::vector<std::pair<std::string, Parameter*>> Module::named_parameters() {
  std::vector<std::pair<std::string, Parameter*>> out;
  for (Parameter* p : parameters()) out.emplace_back(p->own_name.empty() ? p->name : p->own_name, p);
  return out;
}

Parameter* Module::parameter(const std::string& name) {
  const std::vector<std::pair<std::string, Parameter*>> named = named_parameters();
  for (const auto& [n, p] : named) {
    if (n == name) return p;
  }
  // A few names are enough to show the spelling (an index prefix missing, a layer suffix).
  constexpr std::size_t kShown = 6;
  std::string have;
  for (std::size_t i = 0; i < named.size() && i < kShown; ++i) have += (i ? ", " : "") + named[i].first;
  if (named.size() > kShown) have += ", ... (" + std::to_string(named.size()) + " in all)";
  throw ValueError(describe() + ": no parameter named '" + name + "'" +
                   (named.empty() ? std::string("; it has no parameters") : "; it has " + have));
}

std::vector<NamedTensor> Module::state() {
  std::vector<NamedTensor> out;
  for (auto& [name, p] : named_parameters()) out.emplace_back(name, p->value);
  for (auto& [name, t] : buffers()) out.emplace_back(name, *t);
  // Two entries of one name would be saved twice and restored from one: a container that
  // renames Parameter::name without overriding named_parameters() gives its children's own names.
  std::set<std::string> seen;
  for (const auto& [name, t] : out) {
    if (!seen.insert(name).second) {
      throw ValueError(describe() + ": two parameters or buffers are named '" + name +
                       "'; a container must override named_parameters() and buffers() to prefix its children's");
    }
  }
  return out;
}

void Module::load_state(const std::vector<NamedTensor>& state) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : state) by_name[name] = &t;
  (void)this->state();  // throws when this module's own names repeat
  // Every entry is found and checked before any is copied, so a bad file changes nothing.
  std::vector<std::pair<Tensor*, const Tensor*>> copies;
  auto match = [&](const std::string& name, Tensor& dst) {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw ValueError("load_state: " + describe() + " has no saved tensor '" + name + "'");
    const Tensor& src = *it->second;
    if (src.shape() != dst.shape()) {
      throw ShapeError("load_state: '" + name + "' is " + dst.shape().str() + " in " + describe() + " but " +
                       src.shape().str() + " in the saved state");
    }
    copies.emplace_back(&dst, &src);
  };
  for (auto& [name, p] : named_parameters()) match(name, p->value);
  for (auto& [name, t] : buffers()) {
    // Batch norm's count came later than the files some users keep: without it, it stays as is.
    if (name.ends_with("num_batches_tracked") && by_name.find(name) == by_name.end()) continue;
    match(name, *t);
  }
  for (auto& [dst, src] : copies) dst->copy_from(src->dtype() == dst->dtype() ? *src : src->cast(dst->dtype()));
}

void Module::to(Device device) {
  for (Parameter* p : parameters()) {
    p->value = p->value.to(device);
    p->grad = p->grad.to(device);
  }
  for (auto& [name, t] : buffers()) *t = t->to(device);
  device_ = device;
}

void Module::zero_grad() {
  for (Parameter* p : parameters()) ops::fill(p->grad, 0.0);
}

void Module::require_forward(bool kept) const {
  if (!kept) {
    throw Error(describe() + ": backward called without a train-mode forward before it (forward in eval mode " +
                "keeps nothing for backward)");
  }
}

void Module::require_float(const Tensor& x) const {
  if (!x.defined()) throw ValueError(describe() + ": the input is an undefined tensor");
  const DType t = x.dtype();
  if (!is_floating(t)) {
    throw ValueError(describe() + ": expected an f32, bf16 or f16 input, got " + dtype_name(t));
  }
}

void Module::require_grad_shape(const Tensor& grad_output, const Shape& expected, const char* what) const {
  if (grad_output.shape() != expected) {
    throw ShapeError(describe() + ": gradient " + grad_output.shape().str() + " does not match " + what + " " +
                     expected.str());
  }
}

Parameter Module::make_parameter(std::string name, const Shape& shape, Device device) {
  Parameter p{std::move(name), Tensor::empty(shape, DType::kF32, device), Tensor::zeros(shape, DType::kF32, device)};
  p.own_name = p.name;
  return p;
}

}  // namespace gpudl
