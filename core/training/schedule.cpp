// Learning-rate schedules as pure functions of the step, and their argument checks.
#include "gpudl/core/training/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <utility>

#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/format.h"

namespace gpudl {
namespace {

std::string number(double v) { return format_number(v, 10); }

bool non_negative(double v) { return std::isfinite(v) && v >= 0.0; }

void require(bool ok, const char* schedule, const char* argument, const std::string& value, const char* rule) {
  if (!ok) throw ValueError(std::string(schedule) + ": " + argument + " must be " + rule + ", got " + value);
}
void require(bool ok, const char* schedule, const char* argument, double value, const char* rule) {
  require(ok, schedule, argument, number(value), rule);
}
void require_steps(bool ok, const char* schedule, const char* argument, std::int64_t value, const char* rule) {
  require(ok, schedule, argument, std::to_string(value), rule);
}

void check_step(std::int64_t step, const char* schedule) {
  if (step < 0) throw ValueError(std::string(schedule) + ": step must be >= 0, got " + std::to_string(step));
}

// Cosine interpolation from `start` (pct = 0) to `end` (pct = 1), as PyTorch's _annealing_cos.
double anneal_cos(double start, double end, double pct) {
  return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1.0);
}

}  // namespace

ConstantLR::ConstantLR(double lr) : lr_(lr) { require(non_negative(lr), "ConstantLR", "lr", lr, "finite and >= 0"); }

double ConstantLR::lr_at(std::int64_t step) const {
  check_step(step, "ConstantLR");
  return lr_;
}

std::string ConstantLR::describe() const { return "ConstantLR(lr=" + number(lr_) + ")"; }

StepLR::StepLR(double base, std::int64_t step_size, double gamma) : base_(base), step_size_(step_size), gamma_(gamma) {
  require(non_negative(base), "StepLR", "base", base, "finite and >= 0");
  require_steps(step_size >= 1, "StepLR", "step_size", step_size, ">= 1");
  require(non_negative(gamma), "StepLR", "gamma", gamma, "finite and >= 0");
}

double StepLR::lr_at(std::int64_t step) const {
  check_step(step, "StepLR");
  return base_ * std::pow(gamma_, static_cast<double>(step / step_size_));
}

std::string StepLR::describe() const {
  return "StepLR(base=" + number(base_) + ", step_size=" + std::to_string(step_size_) + ", gamma=" + number(gamma_) +
         ")";
}

ExponentialLR::ExponentialLR(double base, double gamma) : base_(base), gamma_(gamma) {
  require(non_negative(base), "ExponentialLR", "base", base, "finite and >= 0");
  require(non_negative(gamma), "ExponentialLR", "gamma", gamma, "finite and >= 0");
}

double ExponentialLR::lr_at(std::int64_t step) const {
  check_step(step, "ExponentialLR");
  return base_ * std::pow(gamma_, static_cast<double>(step));
}

std::string ExponentialLR::describe() const {
  return "ExponentialLR(base=" + number(base_) + ", gamma=" + number(gamma_) + ")";
}

CosineLR::CosineLR(double base, std::int64_t total_steps, double min_lr)
    : base_(base), total_steps_(total_steps), min_lr_(min_lr) {
  require(non_negative(base), "CosineLR", "base", base, "finite and >= 0");
  require_steps(total_steps >= 1, "CosineLR", "total_steps", total_steps, ">= 1");
  require(non_negative(min_lr), "CosineLR", "min_lr", min_lr, "finite and >= 0");
}

double CosineLR::lr_at(std::int64_t step) const {
  check_step(step, "CosineLR");
  const double pct = static_cast<double>(std::min(step, total_steps_)) / static_cast<double>(total_steps_);
  return anneal_cos(base_, min_lr_, pct);
}

std::string CosineLR::describe() const {
  return "CosineLR(base=" + number(base_) + ", total_steps=" + std::to_string(total_steps_) +
         ", min_lr=" + number(min_lr_) + ")";
}

WarmupLR::WarmupLR(std::shared_ptr<const Schedule> after, std::int64_t warmup_steps)
    : after_(std::move(after)), warmup_steps_(warmup_steps) {
  if (after_ == nullptr) throw ValueError("WarmupLR: the schedule to warm up into is null");
  require_steps(warmup_steps >= 0, "WarmupLR", "warmup_steps", warmup_steps, ">= 0");
}

double WarmupLR::lr_at(std::int64_t step) const {
  check_step(step, "WarmupLR");
  if (step >= warmup_steps_) return after_->lr_at(step - warmup_steps_);
  return after_->lr_at(0) * static_cast<double>(step + 1) / static_cast<double>(warmup_steps_);
}

std::string WarmupLR::describe() const {
  return "WarmupLR(warmup_steps=" + std::to_string(warmup_steps_) + ", after=" + after_->describe() + ")";
}

OneCycleLR::OneCycleLR(double max_lr, std::int64_t total_steps, double pct_start, double div_factor,
                       double final_div_factor)
    : max_lr_(max_lr),
      total_steps_(total_steps),
      pct_start_(pct_start),
      div_factor_(div_factor),
      final_div_factor_(final_div_factor) {
  require(non_negative(max_lr), "OneCycleLR", "max_lr", max_lr, "finite and >= 0");
  require_steps(total_steps >= 1, "OneCycleLR", "total_steps", total_steps, ">= 1");
  require(pct_start >= 0.0 && pct_start <= 1.0, "OneCycleLR", "pct_start", pct_start, "in [0, 1]");
  require(std::isfinite(div_factor) && div_factor > 0.0, "OneCycleLR", "div_factor", div_factor, "finite and > 0");
  require(std::isfinite(final_div_factor) && final_div_factor > 0.0, "OneCycleLR", "final_div_factor",
          final_div_factor, "finite and > 0");
}

double OneCycleLR::lr_at(std::int64_t step) const {
  check_step(step, "OneCycleLR");
  const double initial_lr = max_lr_ / div_factor_;
  const double final_lr = initial_lr / final_div_factor_;
  const double s = static_cast<double>(std::min(step, total_steps_ - 1));
  // PyTorch's phase boundaries: warm-up ends at step pct_start * T - 1, annealing at T - 1.
  const double warm_end = pct_start_ * static_cast<double>(total_steps_) - 1.0;
  const double anneal_end = static_cast<double>(total_steps_) - 1.0;
  // A phase of zero length (PyTorch divides by zero there) counts as already complete.
  auto fraction = [](double done, double span) { return span > 0.0 ? done / span : 1.0; };
  if (s <= warm_end) return anneal_cos(initial_lr, max_lr_, fraction(s, warm_end));
  return anneal_cos(max_lr_, final_lr, fraction(s - warm_end, anneal_end - warm_end));
}

std::string OneCycleLR::describe() const {
  return "OneCycleLR(max_lr=" + number(max_lr_) + ", total_steps=" + std::to_string(total_steps_) +
         ", pct_start=" + number(pct_start_) + ", div_factor=" + number(div_factor_) +
         ", final_div_factor=" + number(final_div_factor_) + ")";
}

PiecewiseLinearLR::PiecewiseLinearLR(std::vector<std::pair<std::int64_t, double>> points)
    : points_(std::move(points)) {
  if (points_.empty()) throw ValueError("PiecewiseLinearLR: needs at least one (step, lr) point");
  for (std::size_t i = 0; i < points_.size(); ++i) {
    const auto [step, lr] = points_[i];
    require_steps(step >= 0 && (i == 0 || step > points_[i - 1].first), "PiecewiseLinearLR", "step", step,
                  ">= 0 and greater than the previous point's");
    require(non_negative(lr), "PiecewiseLinearLR", "lr", lr, "finite and >= 0");
  }
}

double PiecewiseLinearLR::lr_at(std::int64_t step) const {
  check_step(step, "PiecewiseLinearLR");
  if (step <= points_.front().first) return points_.front().second;
  for (std::size_t i = 1; i < points_.size(); ++i) {
    const auto [x1, y1] = points_[i];
    if (step <= x1) {
      const auto [x0, y0] = points_[i - 1];
      return y0 + (y1 - y0) * static_cast<double>(step - x0) / static_cast<double>(x1 - x0);
    }
  }
  return points_.back().second;
}

std::string PiecewiseLinearLR::describe() const {
  std::string out = "PiecewiseLinearLR(";
  for (std::size_t i = 0; i < points_.size(); ++i) {
    out += (i ? ", (" : "(") + std::to_string(points_[i].first) + ", " + number(points_[i].second) + ")";
  }
  return out + ")";
}

}  // namespace gpudl
