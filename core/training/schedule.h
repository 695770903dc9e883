// Learning-rate schedules: constant, step, exponential, cosine, linear warm-up and one-cycle.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace gpudl {

// A learning rate as a pure function of the step (0 for the first step), so resuming training
// needs only the step count: call optimizer.set_lr(schedule.lr_at(optimizer.steps())) before
// each step. Every lr_at throws ValueError for a negative step.
class Schedule {
 public:
  virtual ~Schedule() = default;
  virtual double lr_at(std::int64_t step) const = 0;
  // "CosineLR(base=0.1, total_steps=1000, min_lr=0)": what the schedule is, for logs.
  virtual std::string describe() const = 0;
};

// lr at every step. Throws ValueError unless lr is finite and >= 0.
class ConstantLR final : public Schedule {
 public:
  explicit ConstantLR(double lr);
  double lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  double lr_;
};

// base * gamma^floor(step / step_size). Throws ValueError unless base is finite and >= 0,
// step_size >= 1 and gamma is finite and >= 0.
class StepLR final : public Schedule {
 public:
  StepLR(double base, std::int64_t step_size, double gamma);
  double lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  double base_;
  std::int64_t step_size_;
  double gamma_;
};

// base * gamma^step. Throws ValueError unless base and gamma are finite and >= 0.
class ExponentialLR final : public Schedule {
 public:
  ExponentialLR(double base, double gamma);
  double lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  double base_;
  double gamma_;
};

// min_lr + (base - min_lr) * (1 + cos(pi * t / total_steps)) / 2 with t = min(step, total_steps):
// from base at step 0 down to min_lr at total_steps, then held there. Throws ValueError unless
// base and min_lr are finite and >= 0 and total_steps >= 1.
class CosineLR final : public Schedule {
 public:
  CosineLR(double base, std::int64_t total_steps, double min_lr = 0);
  double lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  double base_;
  std::int64_t total_steps_;
  double min_lr_;
};

// Linear warm-up into another schedule: with L = after->lr_at(0) and W = warmup_steps, step s < W
// gets L * (s + 1) / W (L / W, 2L / W, ..., L at the last warm-up step), and step s >= W gets
// after->lr_at(s - W). warmup_steps = 0 passes `after` through. Throws ValueError for a null
// `after` or a negative warmup_steps.
class WarmupLR final : public Schedule {
 public:
  WarmupLR(std::shared_ptr<const Schedule> after, std::int64_t warmup_steps);
  double lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  std::shared_ptr<const Schedule> after_;
  std::int64_t warmup_steps_;
};

// PyTorch's OneCycleLR(anneal_strategy='cos', three_phase=False): cosine from max_lr / div_factor
// up to max_lr at step pct_start * total_steps - 1, then cosine down to
// max_lr / (div_factor * final_div_factor) at step total_steps - 1; later steps keep that final
// rate (where PyTorch raises). Throws ValueError unless max_lr is finite and >= 0,
// total_steps >= 1, pct_start is in [0, 1] and both divisors are finite and > 0.
class OneCycleLR final : public Schedule {
 public:
  OneCycleLR(double max_lr, std::int64_t total_steps, double pct_start = 0.3, double div_factor = 25,
             double final_div_factor = 1e4);
  double lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  double max_lr_;
  std::int64_t total_steps_;
  double pct_start_;
  double div_factor_;
  double final_div_factor_;
};

// Straight lines between (step, lr) points: before the first point its lr, after the last its
// lr. airbench's triangle is {{0, 0.2 x peak}, {0.23 T, peak}, {T, 0.07 x peak}}. Throws
// ValueError for no points, steps that are negative or not increasing, or an lr that is not
// finite and >= 0.
class PiecewiseLinearLR final : public Schedule {
 public:
  explicit PiecewiseLinearLR(std::vector<std::pair<std::int64_t, double>> points);
  double lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  std::vector<std::pair<std::int64_t, double>> points_;
};

}  // namespace gpudl
