// Element-wise kernels (fill, copy, cast, arithmetic), declared identically for both backends.
#pragma once

#include <cstddef>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/dtype.h"

namespace gpudl::kernels {

// The binary operations, written once for both backends.
struct AddOp {
  GPUDL_HD float operator()(float a, float b) const { return a + b; }
};
struct SubOp {
  GPUDL_HD float operator()(float a, float b) const { return a - b; }
};
struct MulOp {
  GPUDL_HD float operator()(float a, float b) const { return a * b; }
};
struct DivOp {
  GPUDL_HD float operator()(float a, float b) const { return a / b; }
};

namespace cpu {
#include "gpudl/kernels/elementwise.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/elementwise.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
