// Row-wise softmax, log-softmax and the fused cross-entropy loss, declared identically for
// both backends.
#pragma once

#include <cstdint>

#include "gpudl/kernels/common.h"

namespace gpudl::kernels {

namespace cpu {
#include "gpudl/kernels/softmax.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/softmax.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
