// Batch normalisation over (batch, channels, inner) tensors, declared identically for both
// backends: BatchNorm1d is inner = 1, BatchNorm2d inner = H * W.
#pragma once

#include "gpudl/kernels/common.h"

namespace gpudl::kernels {

namespace cpu {
#include "gpudl/kernels/norm.inc"
}  // namespace cpu

namespace cuda {
#include "gpudl/kernels/norm.inc"
}  // namespace cuda

}  // namespace gpudl::kernels
