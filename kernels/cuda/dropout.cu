// CUDA dropout; twin of kernels/cpu/dropout.cpp (identical masks).
#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/dropout.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

// One thread per block of four elements: one Philox call feeds four masks.
__global__ void dropout_forward_kernel(float* y, float* mask, const float* x, index_t n, float p, std::uint64_t seed,
                                       std::uint64_t offset) {
  const index_t blocks = (n + 3) / 4;
  for (index_t b = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; b < blocks;
       b += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const Philox4x32 r = philox_block(seed, offset, static_cast<std::uint64_t>(b));
    for (int j = 0; j < 4; ++j) {
      const index_t i = 4 * b + j;
      if (i < n) {
        const float m = dropout_scale(uniform01(r.v[j]), p);
        mask[i] = m;
        y[i] = x[i] * m;
      }
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void dropout_forward(float* y, float* mask, const float* x, index_t n, float p, std::uint64_t seed,
                     std::uint64_t offset, const Exec& exec) {
  if (n == 0) return;
  dropout_forward_kernel<<<detail::grid_for((n + 3) / 4), detail::kBlock, 0, detail::stream_of(exec)>>>(
      y, mask, x, n, p, seed, offset);
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
