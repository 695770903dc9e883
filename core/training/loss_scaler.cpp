// LossScaler: option checks, the one-sync overflow test of the gradients, unscaling, the
// backoff/growth rule and the checkpoint state.
#include "gpudl/core/training/loss_scaler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/format.h"
#include "gpudl/core/runtime/ops.h"
#include "gpudl/kernels/elementwise.h"
#include "gpudl/kernels/optim.h"

namespace gpudl {
namespace {

// The overflow test zeroes gradients through a scratch buffer of at most this many floats
// (4 MiB), chunk by chunk, so that its memory does not grow with the largest parameter.
constexpr std::int64_t kScratchElements = std::int64_t{1} << 20;

std::string number(double v) { return format_number(v, 10); }

[[noreturn]] void reject(const std::string& what) { throw ValueError("LossScaler: " + what); }

void require(bool ok, const char* option, double value, const char* rule) {
  if (!ok) reject(std::string(option) + " must be " + rule + ", got " + number(value));
}

// A null parameter, a missing or non-f32 gradient, or gradients on two devices, named; returns
// the device the gradients share (the CPU for an empty list).
Device gradient_device(const std::vector<Parameter*>& params, const char* what) {
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Parameter* p = params[i];
    if (p == nullptr) throw ValueError(std::string(what) + ": parameter " + std::to_string(i) + " is a null pointer");
    if (!p->grad.defined() || p->grad.dtype() != DType::kF32) {
      throw ValueError(std::string(what) + ": parameter '" + p->name + "' has no f32 gradient");
    }
    if (p->grad.device() != params[0]->grad.device()) {
      throw DeviceError(std::string(what) + ": gradients on " + params[0]->grad.device().str() + " ('" +
                        params[0]->name + "') and " + p->grad.device().str() + " ('" + p->name + "')");
    }
  }
  return params.empty() ? Device::cpu() : params[0]->grad.device();
}

}  // namespace

LossScaler::LossScaler(LossScalerOptions options) : options_(options), scale_(options.initial_scale) {
  const LossScalerOptions& o = options_;
  auto positive = [](float v) { return std::isfinite(v) && v > 0.0f; };
  require(positive(o.initial_scale), "initial_scale", o.initial_scale, "finite and > 0");
  require(positive(o.min_scale), "min_scale", o.min_scale, "finite and > 0");
  require(positive(o.max_scale), "max_scale", o.max_scale, "finite and > 0");
  require(std::isfinite(o.growth_factor) && o.growth_factor > 1.0f, "growth_factor", o.growth_factor,
          "finite and > 1");
  require(o.backoff_factor > 0.0f && o.backoff_factor < 1.0f, "backoff_factor", o.backoff_factor,
          "in (0, 1)");
  if (o.growth_interval < 1) {
    reject("growth_interval must be >= 1, got " + std::to_string(o.growth_interval));
  }
  if (o.min_scale > o.max_scale) {
    reject("min_scale " + number(o.min_scale) + " must not exceed max_scale " + number(o.max_scale));
  }
  require(o.initial_scale >= o.min_scale && o.initial_scale <= o.max_scale, "initial_scale", o.initial_scale,
          ("within [min_scale, max_scale] = [" + number(o.min_scale) + ", " + number(o.max_scale) + "]").c_str());
}

bool LossScaler::gradients_finite(const std::vector<Parameter*>& params) {
  const Device device = gradient_device(params, "LossScaler::gradients_finite");
  std::int64_t largest = 0;
  for (const Parameter* p : params) largest = std::max(largest, p->grad.numel());
  if (largest == 0) return true;

  // 0 * x is 0 for finite x and NaN for ±Inf or NaN, so the squares of the products sum to 0
  // or NaN exactly: unlike the squares of the gradients themselves, large finite values cannot
  // overflow into a false alarm. Everything accumulates on the device; one read at the end.
  Tensor total = Tensor::zeros({1}, DType::kF32, device);
  Tensor scratch = Tensor::empty({std::min(largest, kScratchElements)}, DType::kF32, device);
  for (const Parameter* p : params) {
    const float* g = p->grad.data<float>();
    const std::int64_t n = p->grad.numel();
    for (std::int64_t off = 0; off < n; off += kScratchElements) {
      const std::int64_t len = std::min(kScratchElements, n - off);
      detail::twin<&kernels::cpu::scale, &kernels::cuda::scale>(device, {}, scratch.data<float>(), g + off, 0.0f,
                                                                len);
      detail::twin<&kernels::cpu::sum_squares, &kernels::cuda::sum_squares>(device, {}, total.data<float>(),
                                                                            scratch.data<float>(), len);
    }
  }
  return std::isfinite(total.to_vector<float>()[0]);
}

void LossScaler::unscale(const std::vector<Parameter*>& params) const {
  gradient_device(params, "LossScaler::unscale");
  const float inverse = 1.0f / scale_;  // exact for the power-of-two scales of the usual options
  for (const Parameter* p : params) ops::scale(p->grad, p->grad, inverse);
}

bool LossScaler::update(bool found_inf) {
  if (found_inf) {
    scale_ = std::max(options_.min_scale, scale_ * options_.backoff_factor);
    clean_steps_ = 0;
    ++skipped_;
    return false;
  }
  // >= rather than ==: a restored count may already exceed a shorter interval of this run.
  if (++clean_steps_ >= options_.growth_interval) {
    // A product past FLT_MAX is +inf, which the cap turns back into max_scale.
    scale_ = std::min(options_.max_scale, scale_ * options_.growth_factor);
    clean_steps_ = 0;
  }
  return true;
}

Tensor LossScaler::state() const {
  const auto bits = static_cast<std::int64_t>(std::bit_cast<std::uint32_t>(scale_));
  return Tensor::from_vector(std::vector<std::int64_t>{bits, clean_steps_, skipped_}, {3});
}

void LossScaler::restore(const Tensor& state) {
  if (!state.defined()) reject("checkpoint state is an undefined tensor");
  if (state.dtype() != DType::kI64) {
    reject(std::string("checkpoint state has dtype ") + dtype_name(state.dtype()) + ", expected i64");
  }
  if (state.numel() != 3) {
    reject("checkpoint state has " + std::to_string(state.numel()) + " elements, expected 3");
  }
  const std::vector<std::int64_t> v = state.to(Device::cpu()).to_vector<std::int64_t>();
  if (v[0] < 0 || v[0] > std::int64_t{UINT32_MAX}) {
    reject("checkpoint scale bits " + std::to_string(v[0]) + " are not a 32-bit pattern");
  }
  const float scale = std::bit_cast<float>(static_cast<std::uint32_t>(v[0]));
  if (!(std::isfinite(scale) && scale > 0.0f)) {
    reject("checkpoint scale " + number(scale) + " (bits " + std::to_string(v[0]) + ") is not finite and > 0");
  }
  if (v[1] < 0) reject("checkpoint clean_steps is " + std::to_string(v[1]) + ", expected >= 0");
  if (v[2] < 0) reject("checkpoint skipped_steps is " + std::to_string(v[2]) + ", expected >= 0");
  // Assigned only once all three are known good, so a rejected state leaves the scaler as it was.
  scale_ = scale;
  clean_steps_ = v[1];
  skipped_ = v[2];
}

}  // namespace gpudl
