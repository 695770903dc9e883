// The optimizers: option checks, lazily allocated state buffers, checkpoint state, and one fused
// kernel launch per parameter tensor; global gradient-norm clipping; make_optimizer.
#include "gpudl/core/training/optim.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/runtime/format.h"
#include "gpudl/core/runtime/ops.h"
#include "gpudl/kernels/optim.h"

namespace gpudl {
namespace {

std::string number(double v) { return format_number(v, 10); }

bool non_negative(double v) { return std::isfinite(v) && v >= 0.0; }
bool in_unit_open(double v) { return v >= 0.0 && v < 1.0; }     // [0, 1)
bool in_unit_closed(double v) { return v >= 0.0 && v <= 1.0; }  // [0, 1]

// Throws ValueError "<kind>: <option> must be <rule>, got <value>" unless ok.
void require(bool ok, const std::string& kind, const char* option, double value, const char* rule) {
  if (!ok) throw ValueError(kind + ": " + option + " must be " + rule + ", got " + number(value));
}

void require_lr(const std::string& kind, double lr) { require(non_negative(lr), kind, "lr", lr, "finite and >= 0"); }
void require_eps(const std::string& kind, double eps) {
  require(non_negative(eps), kind, "eps", eps, "finite and >= 0");
}
void require_weight_decay(const std::string& kind, double wd) {
  require(non_negative(wd), kind, "weight_decay", wd, "finite and >= 0");
}

float f32(double v) { return static_cast<float>(v); }

// Two parameters with one name would share state entries, and a checkpoint could not tell them apart.
void require_unique_names(const std::vector<Parameter*>& params, const char* what) {
  std::set<std::string> seen;
  for (const Parameter* p : params) {
    if (!seen.insert(p->name).second) {
      throw ValueError(std::string(what) + ": two parameters are named '" + p->name +
                       "'; optimizer state is keyed by parameter name");
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Optimizer

Optimizer::Optimizer(std::vector<Parameter*> params) : params_(std::move(params)), buffers_(params_.size()) {
  if (params_.empty()) throw ValueError("optimizer: the parameter list is empty");
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter* p = params_[i];
    if (p == nullptr) throw ValueError("optimizer: parameter " + std::to_string(i) + " is a null pointer");
    if (!p->value.defined()) throw ValueError("optimizer: parameter '" + p->name + "' has no value");
    if (!p->grad.defined()) throw ValueError("optimizer: parameter '" + p->name + "' has no gradient");
  }
}

void Optimizer::zero_grad() {
  // One fill over the flat store's gradients when every parameter still lies in it.
  if (flat_store_intact()) {
    ops::fill(flat_.grad, 0.0);
    return;
  }
  for (Parameter* p : params_) ops::fill(p->grad, 0.0);
}

double Optimizer::lr() const { return lr_; }

void Optimizer::set_lr(double lr) {
  require_lr("set_lr", lr);
  lr_ = lr;
}

std::int64_t Optimizer::steps() const { return steps_; }

void Optimizer::set_steps(std::int64_t steps) {
  if (steps < 0) throw ValueError(kind() + ": a step count of " + std::to_string(steps));
  steps_ = steps;
}

const std::vector<Parameter*>& Optimizer::params() const { return params_; }

void Optimizer::check_params() const {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter& p = *params_[i];
    // Built only on failure: this runs for every parameter at every step.
    auto what = [&] { return kind() + ": parameter '" + p.name + "'"; };
    if (!p.value.defined() || !p.grad.defined()) throw ValueError(what() + " has an undefined value or gradient");
    if (p.value.dtype() != DType::kF32 || p.grad.dtype() != DType::kF32) {
      throw ValueError(what() + " has dtype " + dtype_name(p.value.dtype()) + " and gradient dtype " +
                       dtype_name(p.grad.dtype()) + "; optimizers update f32 only");
    }
    if (p.grad.shape() != p.value.shape()) {
      throw ShapeError(what() + " is " + p.value.shape().str() + " but its gradient is " + p.grad.shape().str());
    }
    if (p.grad.device() != p.value.device()) {
      throw DeviceError(what() + " is on " + p.value.device().str() + " but its gradient is on " +
                        p.grad.device().str());
    }
    for (const Tensor& b : buffers_[i]) {
      if (b.defined() && b.shape() != p.value.shape()) {
        throw ShapeError(what() + " is " + p.value.shape().str() + " but its optimizer state is " + b.shape().str());
      }
    }
  }
}

Tensor& Optimizer::buffer(std::size_t param, std::size_t which) {
  std::vector<Tensor>& row = buffers_.at(param);
  if (row.size() <= which) row.resize(std::max(which + 1, buffer_names().size()));
  Tensor& b = row[which];
  const Tensor& value = params_[param]->value;
  if (!b.defined()) {
    b = Tensor::zeros(value.shape(), DType::kF32, value.device());
  } else if (b.device() != value.device()) {
    b = b.to(value.device());
  }
  return b;
}

bool Optimizer::build_flat_store() {
  flat_ = FlatStore{};
  const Device device = params_[0]->value.device();
  if (multi_tensor_ == 0 || (multi_tensor_ < 0 && device.is_cpu()) || !owned_.empty()) return false;
  // Tied weights (two parameters over the same memory) must stay tied: no flat copy of them.
  // Memory, not storage, decides: after a store is left, parameters are views into one storage.
  std::vector<std::pair<const char*, const char*>> ranges;
  std::int64_t total = 0;
  for (const Parameter* p : params_) {
    if (p->value.device() != device || p->grad.device() != device || p->value.dtype() != DType::kF32 ||
        p->grad.dtype() != DType::kF32) {
      return false;
    }
    for (const Tensor* t : {&p->value, &p->grad}) {
      const char* begin = static_cast<const char*>(t->raw());
      ranges.emplace_back(begin, begin + t->nbytes());
    }
    total += p->value.numel();
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) return false;
  }
  const std::size_t nb = buffer_names().size();
  FlatStore f;
  f.value = Tensor::empty({std::max<std::int64_t>(total, 1)}, DType::kF32, device);
  f.grad = Tensor::empty({std::max<std::int64_t>(total, 1)}, DType::kF32, device);
  for (std::size_t j = 0; j < nb; ++j) f.buffers.push_back(Tensor::zeros({std::max<std::int64_t>(total, 1)}, DType::kF32, device));
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = *params_[i];
    const std::int64_t n = p.value.numel();
    const std::vector<std::int64_t> dims = p.value.shape().dims();
    Tensor value = f.value.slice(offset, offset + n).reshape(dims);
    Tensor grad = f.grad.slice(offset, offset + n).reshape(dims);
    value.copy_from(p.value);
    grad.copy_from(p.grad);
    p.value = value;
    p.grad = grad;
    std::vector<Tensor>& row = buffers_[i];
    row.resize(nb);
    for (std::size_t j = 0; j < nb; ++j) {
      Tensor view = f.buffers[j].slice(offset, offset + n).reshape(dims);
      if (row[j].defined()) view.copy_from(row[j].to(device));  // state so far (zeros otherwise)
      row[j] = view;
    }
    f.offsets.push_back(offset);
    offset += n;
  }
  f.active = true;
  flat_ = std::move(f);
  return true;
}

bool Optimizer::flat_store_intact() const {
  if (!flat_.active || !owned_.empty() || multi_tensor_ == 0) return false;
  const std::size_t nb = buffer_names().size();
  const auto* v = static_cast<const char*>(flat_.value.raw());
  const auto* g = static_cast<const char*>(flat_.grad.raw());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const std::size_t at = static_cast<std::size_t>(flat_.offsets[i]) * sizeof(float);
    const Parameter& p = *params_[i];
    if (p.value.raw() != v + at || p.grad.raw() != g + at || buffers_[i].size() != nb) return false;
    for (std::size_t j = 0; j < nb; ++j) {
      if (buffers_[i][j].raw() != static_cast<const char*>(flat_.buffers[j].raw()) + at) return false;
    }
  }
  return true;
}

std::vector<Optimizer::Run> Optimizer::current_runs() {
  const std::size_t nb = buffer_names().size();
  std::vector<Run> out;
  if (flat_store_intact() || build_flat_store()) {
    // One run per stretch of neighbouring parameters with equal factors: one in all without groups.
    for (std::size_t i = 0; i < params_.size();) {
      std::size_t end = i + 1;
      while (end < params_.size() && (scales_.empty() || scales_[end] == scales_[i])) ++end;
      const std::int64_t begin = flat_.offsets[i];
      const std::int64_t stop = end < params_.size() ? flat_.offsets[end] : begin + [&] {
        std::int64_t n = 0;
        for (std::size_t k = i; k < end; ++k) n += params_[k]->value.numel();
        return n;
      }();
      Run r{flat_.value.data<float>() + begin, flat_.grad.data<float>() + begin, stop - begin, {},
            flat_.value.device(), lr_scale(i), decay_scale(i)};
      for (std::size_t j = 0; j < nb; ++j) r.buffers.push_back(flat_.buffers[j].data<float>() + begin);
      out.push_back(std::move(r));
      i = end;
    }
    return out;
  }
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!owns(i)) continue;  // ZeRO-1: another rank updates it
    Parameter& p = *params_[i];
    Run r{p.value.data<float>(), p.grad.data<float>(), p.value.numel(), {}, p.value.device(), lr_scale(i),
          decay_scale(i)};
    for (std::size_t j = 0; j < nb; ++j) r.buffers.push_back(buffer(i, j).data<float>());
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<Optimizer::Run> Optimizer::runs() {
  std::vector<Run> out = current_runs();
  // Where the kernels will read and write: when any of it moved (a store built, rebuilt or given
  // up, a parameter replaced), a captured step would touch the old memory.
  std::vector<const void*> where;
  for (const Run& r : out) {
    where.push_back(r.value);
    where.push_back(r.grad);
    where.push_back(reinterpret_cast<const void*>(static_cast<std::uintptr_t>(r.n)));
    for (const float* b : r.buffers) where.push_back(b);
  }
  if (where != run_pointers_) {
    ++launch_version_;
    run_pointers_ = std::move(where);
  }
  return out;
}

void Optimizer::run_values(const Run& r, float* out) const { out[0] = f32(lr_ * r.lr_scale); }

std::vector<const float*> Optimizer::step_values(const std::vector<Run>& runs) {
  const std::size_t per_run = values_per_run();
  std::vector<const float*> where(runs.size(), nullptr);
  std::vector<bool> done(runs.size(), false);
  for (std::size_t first = 0; first < runs.size(); ++first) {
    if (done[first]) continue;
    // The values of every run on this device, in run order, side by side in one buffer.
    const Device device = runs[first].device;
    std::vector<std::size_t> members;
    for (std::size_t i = first; i < runs.size(); ++i) {
      if (!done[i] && runs[i].device == device) members.push_back(i);
    }
    std::vector<float> host(members.size() * per_run);
    for (std::size_t k = 0; k < members.size(); ++k) run_values(runs[members[k]], host.data() + k * per_run);
    auto slot = std::find_if(value_slots_.begin(), value_slots_.end(),
                             [&](const ValueSlots& v) { return v.device == device; });
    if (slot == value_slots_.end()) slot = value_slots_.insert(value_slots_.end(), ValueSlots{device, {}, {}});
    if (!slot->values.defined() || slot->values.numel() < static_cast<std::int64_t>(host.size())) {
      ++launch_version_;  // the kernels read their values from new memory
      slot->values = Tensor::empty({static_cast<std::int64_t>(std::max<std::size_t>(host.size(), 1))}, DType::kF32,
                                   device);
      slot->written.clear();
    }
    if (slot->written != host) {
      float* dst = slot->values.data<float>();
      for (std::size_t at = 0; at < host.size(); at += kernels::kValueBlock) {
        kernels::ValueBlock block{};
        block.count = static_cast<int>(std::min<std::size_t>(kernels::kValueBlock, host.size() - at));
        std::copy_n(host.begin() + static_cast<std::ptrdiff_t>(at), block.count, block.values);
        detail::twin<&kernels::cpu::write_values, &kernels::cuda::write_values>(device, {}, dst + at, block);
      }
      slot->written = host;
    }
    for (std::size_t k = 0; k < members.size(); ++k) {
      where[members[k]] = slot->values.data<float>() + k * per_run;
      done[members[k]] = true;
    }
  }
  return where;
}

void Optimizer::upload_step_values() {
  check_params();
  step_values(runs());
}

void Optimizer::set_param_scale(std::size_t param, double lr_scale, double decay_scale) {
  if (param >= params_.size()) {
    throw ValueError(kind() + ": set_param_scale for parameter " + std::to_string(param) + " of " +
                     std::to_string(params_.size()));
  }
  for (const auto& [name, value] : {std::pair{"lr_scale", lr_scale}, std::pair{"decay_scale", decay_scale}}) {
    if (!(std::isfinite(value) && value >= 0.0)) {
      throw ValueError(kind() + ": " + name + " must be finite and >= 0, got " + std::to_string(value));
    }
  }
  if (scales_.empty()) scales_.resize(params_.size());
  if (!(scales_[param] == Scale{lr_scale, decay_scale})) ++launch_version_;
  scales_[param] = {lr_scale, decay_scale};
}

void Optimizer::set_owned(std::vector<bool> owned) {
  if (!owned.empty() && owned.size() != params_.size()) {
    throw ValueError(kind() + ": set_owned got " + std::to_string(owned.size()) + " flags for " +
                     std::to_string(params_.size()) + " parameters");
  }
  owned_ = std::move(owned);
}

std::vector<Tensor*> Optimizer::state_buffers(std::size_t param) {
  if (param >= params_.size()) throw ValueError(kind() + ": no parameter " + std::to_string(param));
  std::vector<Tensor*> out;
  for (std::size_t j = 0; j < buffer_names().size(); ++j) out.push_back(&buffer(param, j));
  return out;
}

void Optimizer::release_unowned_state() {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!owns(i)) buffers_[i].clear();
  }
}

std::vector<NamedTensor> Optimizer::state() const {
  require_unique_names(params_, "state");
  const std::vector<std::string> names = buffer_names();
  std::vector<NamedTensor> out;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Parameter& p = *params_[i];
    for (std::size_t j = 0; j < names.size(); ++j) {
      const bool made = j < buffers_[i].size() && buffers_[i][j].defined();
      // Before the first step the state is zeros; a checkpoint taken then still restores.
      out.emplace_back(p.name + "." + names[j],
                       made ? buffers_[i][j] : Tensor::zeros(p.value.shape(), DType::kF32, p.value.device()));
    }
  }
  out.emplace_back("step", Tensor::from_vector(std::vector<std::int64_t>{steps_}, {1}));
  return out;
}

void Optimizer::load_state(const std::vector<NamedTensor>& state) {
  require_unique_names(params_, "load_state");
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : state) by_name[name] = &t;
  auto find = [&](const std::string& name) -> const Tensor& {
    auto it = by_name.find(name);
    if (it == by_name.end() || !it->second->defined()) {
      throw ValueError("load_state: the saved " + kind() + " state has no tensor '" + name + "'");
    }
    return *it->second;
  };

  const Tensor& step = find("step");
  if (step.numel() != 1) throw ShapeError("load_state: 'step' is " + step.shape().str() + ", expected one element");
  const std::int64_t steps = step.to(Device::cpu()).cast(DType::kI64).to_vector<std::int64_t>()[0];
  if (steps < 0) throw ValueError("load_state: 'step' is " + std::to_string(steps) + ", expected >= 0");

  const std::vector<std::string> names = buffer_names();
  std::vector<const Tensor*> sources;
  for (const Parameter* p : params_) {
    for (const std::string& b : names) {
      const std::string name = p->name + "." + b;
      const Tensor& src = find(name);
      if (src.shape() != p->value.shape()) {
        throw ShapeError("load_state: '" + name + "' is " + src.shape().str() + " in the saved state but parameter '" +
                         p->name + "' is " + p->value.shape().str());
      }
      sources.push_back(&src);
    }
  }

  std::vector<std::vector<Tensor>> loaded(params_.size());
  std::size_t next = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    for (std::size_t j = 0; j < names.size(); ++j) {
      const Tensor& src = *sources[next++];
      Tensor dst = Tensor::empty(src.shape(), DType::kF32, params_[i]->value.device());
      dst.copy_from(src.dtype() == DType::kF32 ? src : src.cast(DType::kF32));
      loaded[i].push_back(dst);
    }
  }
  buffers_ = std::move(loaded);
  steps_ = steps;
}

// ---------------------------------------------------------------------------------------------
// SGD

SGD::SGD(std::vector<Parameter*> params, SGDOptions options) : Optimizer(std::move(params)), options_(options) {
  require_lr("sgd", options.lr);
  require(non_negative(options.momentum), "sgd", "momentum", options.momentum, "finite and >= 0");
  require(std::isfinite(options.dampening), "sgd", "dampening", options.dampening, "finite");
  require_weight_decay("sgd", options.weight_decay);
  if (options.nesterov) {
    require(options.momentum > 0.0, "sgd", "momentum", options.momentum, "> 0 with nesterov");
    require(options.dampening == 0.0, "sgd", "dampening", options.dampening, "0 with nesterov");
  }
  lr_ = options.lr;
}

void SGD::step() {
  check_params();
  const bool with_buffer = options_.momentum != 0.0;
  const std::vector<Run> rs = runs();
  const std::vector<const float*> values = step_values(rs);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const Run& r = rs[i];
    float* buf = with_buffer ? r.buffers[0] : nullptr;
    detail::twin<&kernels::cpu::sgd_update, &kernels::cuda::sgd_update>(
        r.device, {}, r.value, r.grad, buf, r.n, values[i], f32(options_.momentum), f32(options_.dampening),
        f32(options_.weight_decay * r.decay_scale), options_.nesterov, steps_ == 0);
  }
  ++steps_;
}

std::vector<std::pair<std::string, double>> SGD::hyperparameters() const {
  return {{"lr", lr_},
          {"momentum", options_.momentum},
          {"dampening", options_.dampening},
          {"weight_decay", options_.weight_decay},
          {"nesterov", options_.nesterov ? 1.0 : 0.0}};
}

std::vector<std::string> SGD::buffer_names() const {
  if (options_.momentum != 0.0) return {"momentum_buffer"};
  return {};
}

// ---------------------------------------------------------------------------------------------
// Adagrad

Adagrad::Adagrad(std::vector<Parameter*> params, AdagradOptions options)
    : Optimizer(std::move(params)), options_(options) {
  require_lr("adagrad", options.lr);
  require_eps("adagrad", options.eps);
  require_weight_decay("adagrad", options.weight_decay);
  lr_ = options.lr;
}

void Adagrad::step() {
  check_params();
  const std::vector<Run> rs = runs();
  const std::vector<const float*> values = step_values(rs);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const Run& r = rs[i];
    detail::twin<&kernels::cpu::adagrad_update, &kernels::cuda::adagrad_update>(
        r.device, {}, r.value, r.grad, r.buffers[0], r.n, values[i], f32(options_.eps),
        f32(options_.weight_decay * r.decay_scale));
  }
  ++steps_;
}

std::vector<std::pair<std::string, double>> Adagrad::hyperparameters() const {
  return {{"lr", lr_}, {"eps", options_.eps}, {"weight_decay", options_.weight_decay}};
}

std::vector<std::string> Adagrad::buffer_names() const { return {"sum"}; }

// ---------------------------------------------------------------------------------------------
// RMSprop

RMSprop::RMSprop(std::vector<Parameter*> params, RMSpropOptions options)
    : Optimizer(std::move(params)), options_(options) {
  require_lr("rmsprop", options.lr);
  require(in_unit_closed(options.alpha), "rmsprop", "alpha", options.alpha, "in [0, 1]");
  require_eps("rmsprop", options.eps);
  require_weight_decay("rmsprop", options.weight_decay);
  require(non_negative(options.momentum), "rmsprop", "momentum", options.momentum, "finite and >= 0");
  lr_ = options.lr;
}

void RMSprop::step() {
  check_params();
  const bool with_momentum = options_.momentum > 0.0;
  const std::vector<Run> rs = runs();
  const std::vector<const float*> values = step_values(rs);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const Run& r = rs[i];
    float* momentum_buf = with_momentum ? r.buffers[1] : nullptr;
    detail::twin<&kernels::cpu::rmsprop_update, &kernels::cuda::rmsprop_update>(
        r.device, {}, r.value, r.grad, r.buffers[0], momentum_buf, r.n, values[i], f32(options_.alpha),
        f32(options_.eps), f32(options_.weight_decay * r.decay_scale), f32(options_.momentum));
  }
  ++steps_;
}

std::vector<std::pair<std::string, double>> RMSprop::hyperparameters() const {
  return {{"lr", lr_},
          {"alpha", options_.alpha},
          {"eps", options_.eps},
          {"weight_decay", options_.weight_decay},
          {"momentum", options_.momentum}};
}

std::vector<std::string> RMSprop::buffer_names() const {
  if (options_.momentum > 0.0) return {"square_avg", "momentum_buffer"};
  return {"square_avg"};
}

// ---------------------------------------------------------------------------------------------
// Adadelta

Adadelta::Adadelta(std::vector<Parameter*> params, AdadeltaOptions options)
    : Optimizer(std::move(params)), options_(options) {
  require_lr("adadelta", options.lr);
  require(in_unit_closed(options.rho), "adadelta", "rho", options.rho, "in [0, 1]");
  require_eps("adadelta", options.eps);
  require_weight_decay("adadelta", options.weight_decay);
  lr_ = options.lr;
}

void Adadelta::step() {
  check_params();
  const std::vector<Run> rs = runs();
  const std::vector<const float*> values = step_values(rs);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const Run& r = rs[i];
    detail::twin<&kernels::cpu::adadelta_update, &kernels::cuda::adadelta_update>(
        r.device, {}, r.value, r.grad, r.buffers[0], r.buffers[1], r.n, values[i], f32(options_.rho),
        f32(options_.eps), f32(options_.weight_decay * r.decay_scale));
  }
  ++steps_;
}

std::vector<std::pair<std::string, double>> Adadelta::hyperparameters() const {
  return {{"lr", lr_}, {"rho", options_.rho}, {"eps", options_.eps}, {"weight_decay", options_.weight_decay}};
}

std::vector<std::string> Adadelta::buffer_names() const { return {"square_avg", "acc_delta"}; }

// ---------------------------------------------------------------------------------------------
// Adam and AdamW

Adam::Adam(std::vector<Parameter*> params, AdamOptions options) : Adam(std::move(params), options, false, "adam") {}

Adam::Adam(std::vector<Parameter*> params, AdamOptions options, bool decoupled, const char* kind)
    : Optimizer(std::move(params)), options_(options), decoupled_(decoupled) {
  require_lr(kind, options.lr);
  require(in_unit_open(options.beta1), kind, "beta1", options.beta1, "in [0, 1)");
  require(in_unit_open(options.beta2), kind, "beta2", options.beta2, "in [0, 1)");
  require_eps(kind, options.eps);
  require_weight_decay(kind, options.weight_decay);
  lr_ = options.lr;
}

void Adam::run_values(const Run& r, float* out) const {
  // The bias corrections come from the host's step count, folded in here in float on the host,
  // so that both backends read the same bits.
  const double t = static_cast<double>(steps_ + 1);
  const float bias_correction1 = f32(1.0 - std::pow(options_.beta1, t));
  const float bias_correction2 = f32(1.0 - std::pow(options_.beta2, t));
  const kernels::AdamValues v = kernels::adam_values(
      f32(lr_ * r.lr_scale), f32(options_.weight_decay * r.decay_scale), bias_correction1, bias_correction2);
  out[0] = v.step_size;
  out[1] = v.sqrt_bc2;
  out[2] = v.decay;
}

void Adam::step() {
  check_params();
  const std::vector<Run> rs = runs();
  const std::vector<const float*> values = step_values(rs);
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const Run& r = rs[i];
    detail::twin<&kernels::cpu::adam_update, &kernels::cuda::adam_update>(
        r.device, {}, r.value, r.grad, r.buffers[0], r.buffers[1], r.n, values[i], f32(options_.beta1),
        f32(options_.beta2), f32(options_.eps), f32(options_.weight_decay * r.decay_scale), decoupled_);
  }
  ++steps_;
}

std::vector<std::pair<std::string, double>> Adam::hyperparameters() const {
  return {{"lr", lr_},
          {"beta1", options_.beta1},
          {"beta2", options_.beta2},
          {"eps", options_.eps},
          {"weight_decay", options_.weight_decay}};
}

std::vector<std::string> Adam::buffer_names() const { return {"exp_avg", "exp_avg_sq"}; }

AdamW::AdamW(std::vector<Parameter*> params, AdamWOptions options)
    : Adam(std::move(params), AdamOptions{options.lr, options.beta1, options.beta2, options.eps, options.weight_decay},
           true, "adamw") {}

// ---------------------------------------------------------------------------------------------
// Clipping and the factory

Tensor clip_grad_norm(const std::vector<Parameter*>& params, float max_norm,
                      const std::function<void(const Tensor& sum_of_squares)>& reduce) {
  if (params.empty()) throw ValueError("clip_grad_norm: the parameter list is empty");
  if (!(max_norm >= 0.0f)) throw ValueError("clip_grad_norm: max_norm must be >= 0, got " + number(max_norm));
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Parameter* p = params[i];
    if (p == nullptr) throw ValueError("clip_grad_norm: parameter " + std::to_string(i) + " is a null pointer");
    if (!p->grad.defined() || p->grad.dtype() != DType::kF32) {
      throw ValueError("clip_grad_norm: parameter '" + p->name + "' has no f32 gradient");
    }
    if (p->grad.device() != params[0]->grad.device()) {
      throw DeviceError("clip_grad_norm: gradients on " + params[0]->grad.device().str() + " ('" + params[0]->name +
                        "') and " + p->grad.device().str() + " ('" + p->name + "')");
    }
  }
  const Device device = params[0]->grad.device();
  // Everything stays on the device: the total feeds the scaling kernels directly.
  Tensor total = Tensor::zeros({1}, DType::kF32, device);
  for (const Parameter* p : params) {
    detail::twin<&kernels::cpu::sum_squares, &kernels::cuda::sum_squares>(device, {}, total.data<float>(),
                                                                          p->grad.data<float>(), p->grad.numel());
  }
  if (reduce) reduce(total);
  Tensor norm = Tensor::empty({1}, DType::kF32, device);
  detail::twin<&kernels::cpu::norm_from_sum_squares, &kernels::cuda::norm_from_sum_squares>(
      device, {}, norm.data<float>(), total.data<float>());
  for (const Parameter* p : params) {
    detail::twin<&kernels::cpu::clip_by_norm, &kernels::cuda::clip_by_norm>(
        device, {}, p->grad.data<float>(), p->grad.numel(), total.data<float>(), max_norm);
  }
  return norm;
}

std::unique_ptr<Optimizer> make_optimizer(const std::string& kind, std::vector<Parameter*> params, double lr) {
  if (kind == "sgd") {
    SGDOptions o;
    o.lr = lr;
    return std::make_unique<SGD>(std::move(params), o);
  }
  if (kind == "adagrad") {
    AdagradOptions o;
    o.lr = lr;
    return std::make_unique<Adagrad>(std::move(params), o);
  }
  if (kind == "rmsprop") {
    RMSpropOptions o;
    o.lr = lr;
    return std::make_unique<RMSprop>(std::move(params), o);
  }
  if (kind == "adadelta") {
    AdadeltaOptions o;
    o.lr = lr;
    return std::make_unique<Adadelta>(std::move(params), o);
  }
  if (kind == "adam") {
    AdamOptions o;
    o.lr = lr;
    return std::make_unique<Adam>(std::move(params), o);
  }
  if (kind == "adamw") {
    AdamWOptions o;
    o.lr = lr;
    return std::make_unique<AdamW>(std::move(params), o);
  }
  throw ValueError("make_optimizer: unknown optimizer '" + kind +
                   "'; valid kinds are sgd, adagrad, rmsprop, adadelta, adam, adamw");
}

}  // namespace gpudl
