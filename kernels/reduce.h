// Reductions along one axis (sum, mean, max, argmax), declared identically for both backends.
#pragma once

#include <cstdint>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/dtype.h"

namespace gpudl::kernels {

// Whether (value, index) should replace (best, best_index) as the running argmax. A total
// order (NaN first, then larger values, then lower indices), so any reduction tree agrees.
GPUDL_HD inline bool argmax_prefers(float value, index_t index, float best, index_t best_index) {
  const bool value_nan = value != value;
  const bool best_nan = best != best;
  if (value_nan != best_nan) return value_nan;
  if (!value_nan && value != best) return value > best;
  return index < best_index;
}

namespace cpu {
#include "gpudl/kernels/reduce.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/reduce.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
