// WeightAverage: the moving average of a model's f32 parameters and buffers.
#include "gpudl/core/training/average.h"

#include <cmath>
#include <map>

#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/ops.h"

namespace gpudl {

WeightAverage::WeightAverage(Module& model) : model_(model) {
  for (auto& [name, tensor] : model.state()) {
    if (tensor.dtype() != DType::kF32) continue;
    names_.push_back(name);
    average_.push_back(tensor.clone());
  }
}

std::vector<Tensor> WeightAverage::live() const {
  std::vector<Tensor> out;
  out.reserve(names_.size());
  for (auto& [name, tensor] : model_.state()) {
    if (tensor.dtype() != DType::kF32) continue;
    const std::size_t i = out.size();
    if (i >= names_.size() || name != names_[i] || tensor.shape() != average_[i].shape()) {
      throw ValueError("WeightAverage: the model's entry '" + name + "' " + tensor.shape().str() +
                       " is not the one the average was made from");
    }
    out.push_back(tensor);
  }
  if (out.size() != names_.size()) {
    throw ValueError("WeightAverage: the model lost its entry '" + names_[out.size()] + "'");
  }
  return out;
}

void WeightAverage::update(double decay) {
  if (!(decay >= 0.0 && decay <= 1.0)) {
    throw ValueError("WeightAverage: decay must be in [0, 1], got " + std::to_string(decay));
  }
  const std::vector<Tensor> now = live();
  for (std::size_t i = 0; i < now.size(); ++i) {
    if (average_[i].device() != now[i].device()) average_[i] = average_[i].to(now[i].device());
    if (decay == 1.0) continue;
    ops::scale(average_[i], average_[i], static_cast<float>(decay));
    ops::axpy(average_[i], static_cast<float>(1.0 - decay), now[i]);
  }
}

void WeightAverage::copy_to_model() {
  const std::vector<Tensor> now = live();
  for (std::size_t i = 0; i < now.size(); ++i) ops::copy(now[i], average_[i].to(now[i].device()));
}

void WeightAverage::swap_with_model() {
  const std::vector<Tensor> now = live();
  for (std::size_t i = 0; i < now.size(); ++i) {
    Tensor model_values = now[i].clone();
    ops::copy(now[i], average_[i].to(now[i].device()));
    average_[i] = std::move(model_values);
  }
}

std::vector<NamedTensor> WeightAverage::state(const std::string& prefix) const {
  std::vector<NamedTensor> out;
  for (std::size_t i = 0; i < names_.size(); ++i) out.emplace_back(prefix + names_[i], average_[i]);
  return out;
}

void WeightAverage::load_state(const std::vector<NamedTensor>& entries, const std::string& prefix) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, tensor] : entries) by_name[name] = &tensor;
  std::vector<const Tensor*> found;
  for (std::size_t i = 0; i < names_.size(); ++i) {
    const auto it = by_name.find(prefix + names_[i]);
    if (it == by_name.end()) throw ValueError("WeightAverage: the state has no entry '" + prefix + names_[i] + "'");
    if (it->second->shape() != average_[i].shape()) {
      throw ShapeError("WeightAverage: entry '" + it->first + "' is " + it->second->shape().str() + ", expected " +
                       average_[i].shape().str());
    }
    found.push_back(it->second);
  }
  for (std::size_t i = 0; i < names_.size(); ++i) {
    average_[i].copy_from(found[i]->as(DType::kF32).to(average_[i].device()));
  }
}

}  // namespace gpudl
