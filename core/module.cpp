// Module's shared behaviour: state for checkpoints, moving between devices, zeroing gradients.
#include "gpudl/core/module.h"

#include <map>

#include "gpudl/core/env_flag.h"
#include "gpudl/core/ops.h"

namespace gpudl {

namespace {
detail::EnvFlag& check_finite_flag() {
  static detail::EnvFlag flag("GPUDL_CHECK_FINITE");
  return flag;
}
}  // namespace

void set_check_finite(bool on) { check_finite_flag().set(on); }
bool check_finite() { return check_finite_flag().get(); }

std::vector<NamedTensor> Module::state() {
  std::vector<NamedTensor> out;
  for (Parameter* p : parameters()) out.emplace_back(p->name, p->value);
  for (auto& [name, t] : buffers()) out.emplace_back(name, *t);
  return out;
}

void Module::load_state(const std::vector<NamedTensor>& state) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : state) by_name[name] = &t;
  auto restore = [&](const std::string& name, Tensor& dst) {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw ValueError("load_state: " + describe() + " has no saved tensor '" + name + "'");
    const Tensor& src = *it->second;
    if (src.shape() != dst.shape()) {
      throw ShapeError("load_state: '" + name + "' is " + dst.shape().str() + " in " + describe() + " but " +
                       src.shape().str() + " in the saved state");
    }
    dst.copy_from(src.dtype() == dst.dtype() ? src : src.cast(dst.dtype()));
  };
  for (Parameter* p : parameters()) restore(p->name, p->value);
  for (auto& [name, t] : buffers()) restore(name, *t);
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

Parameter Module::make_parameter(std::string name, const Shape& shape, Device device) {
  return Parameter{std::move(name), Tensor::empty(shape, DType::kF32, device), Tensor::zeros(shape, DType::kF32, device)};
}

}  // namespace gpudl
