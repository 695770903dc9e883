// Dynamic loss scaling for fp16 training: the loss gradient is multiplied by a scale so that
// small gradients survive fp16, a step whose gradients overflowed is skipped and the scale
// backs off, and a run of clean steps lets it grow again.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpudl/core/runtime/module.h"

namespace gpudl {

struct LossScalerOptions {
  float initial_scale = 65536.0f;   // 2^16, as the usual fp16 recipes
  float growth_factor = 2.0f;       // applied after growth_interval clean steps in a row
  float backoff_factor = 0.5f;      // applied at every step with a non-finite gradient
  std::int64_t growth_interval = 2000;
  float min_scale = 1.0f;           // the scale never backs off below this
  float max_scale = 16777216.0f;    // 2^24: it never grows past this
};

class LossScaler {
 public:
  // Throws ValueError naming the option that is out of range (scales must be finite and > 0,
  // growth_factor > 1, 0 < backoff_factor < 1, growth_interval >= 1, min <= initial <= max).
  explicit LossScaler(LossScalerOptions options = {});

  float scale() const { return scale_; }
  // Clean steps since the last change of scale.
  std::int64_t clean_steps() const { return clean_steps_; }
  // Steps skipped for a non-finite gradient since construction (or as restored).
  std::int64_t skipped_steps() const { return skipped_; }

  // Whether every gradient is finite: one device reduction per parameter into one scalar,
  // then a single read back (one host sync per step).
  static bool gradients_finite(const std::vector<Parameter*>& params);
  // Multiplies every gradient by 1 / scale(), on the device.
  void unscale(const std::vector<Parameter*>& params) const;

  // Records a step's outcome: with found_inf, the scale backs off and the step counts as
  // skipped; otherwise it counts as clean and the scale grows after growth_interval of them.
  // Returns whether the optimizer should apply the step (!found_inf).
  bool update(bool found_inf);

  // For checkpoints: one i64 tensor on the CPU, [bit pattern of the f32 scale, clean_steps,
  // skipped_steps] (bits, so a resumed run continues with exactly this scale), and back.
  // restore throws ValueError naming what is wrong with a malformed tensor.
  Tensor state() const;
  void restore(const Tensor& state);

  const LossScalerOptions& options() const { return options_; }

 private:
  LossScalerOptions options_;
  float scale_;
  std::int64_t clean_steps_ = 0;
  std::int64_t skipped_ = 0;
};

}  // namespace gpudl
