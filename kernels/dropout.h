// Dropout with Philox masks, declared identically for both backends (same mask for the same
// seed and offset on either).
#pragma once

#include <cstdint>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/dtype.h"
#include "gpudl/kernels/philox.h"

namespace gpudl::kernels {

// The inverted-dropout multiplier for uniform draw u: 0 with probability p, else 1 / (1 - p),
// so the expected output equals the input and evaluation needs no rescaling.
GPUDL_HD inline float dropout_scale(float u, float p) { return u < p ? 0.0f : 1.0f / (1.0f - p); }

namespace cpu {
#include "gpudl/kernels/dropout.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/dropout.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
