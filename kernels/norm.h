// Batch normalisation over (batch, channels, inner) tensors, declared identically for both
// backends: BatchNorm1d is inner = 1, BatchNorm2d inner = H * W.
#pragma once

#include <algorithm>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/dtype.h"

namespace gpudl::kernels {

// The CUDA backend splits each channel's n * inner values into this many parts, one block each,
// so that a few channels still fill the GPU (one block per channel left most of it idle).
inline index_t batchnorm_parts(index_t n, index_t c, index_t inner) {
  constexpr index_t kMinPart = 4096, kTargetBlocks = 1024;
  const index_t m = n * inner;
  const index_t parts = std::min((m + kMinPart - 1) / kMinPart, (kTargetBlocks + c - 1) / std::max<index_t>(c, 1));
  return std::max<index_t>(parts, 1);
}

// Floats of device scratch that batchnorm_forward_train and batchnorm_backward need on CUDA
// (per-part partial sums, then per-channel totals); the CPU backend takes nullptr.
inline index_t batchnorm_scratch_floats(index_t n, index_t c, index_t inner) {
  return 2 * c * (batchnorm_parts(n, c, inner) + 1);
}

namespace cpu {
#include "gpudl/kernels/norm.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/norm.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
