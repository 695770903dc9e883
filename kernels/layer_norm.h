// Layer normalisation over the last axis of (rows, cols) f32 tensors, declared identically for
// both backends.
#pragma once

#include "gpudl/kernels/common.h"

namespace gpudl::kernels {

namespace cpu {
#include "gpudl/kernels/layer_norm.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/layer_norm.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
