// Matrix products (cuBLAS on CUDA, OpenBLAS on the CPU), declared identically for both backends.
#pragma once

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/dtype.h"

namespace gpudl::kernels {

namespace cpu {
#include "gpudl/kernels/gemm.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/gemm.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
