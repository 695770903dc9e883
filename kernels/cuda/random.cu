// CUDA Philox random fills; twins of kernels/cpu/random.cpp (the same numbers, element for element).
#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/random.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

// One thread per block of four elements: one Philox call feeds four outputs.
__global__ void uniform_kernel(float* out, index_t n, float low, float high, std::uint64_t seed,
                               std::uint64_t offset) {
  const index_t blocks = (n + 3) / 4;
  for (index_t b = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; b < blocks;
       b += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const Philox4x32 r = philox_block(seed, offset, static_cast<std::uint64_t>(b));
    for (int j = 0; j < 4; ++j) {
      const index_t i = 4 * b + j;
      if (i < n) out[i] = uniform_value(r.v[j], low, high);
    }
  }
}

__global__ void normal_kernel(float* out, index_t n, float mean, float stddev, std::uint64_t seed,
                              std::uint64_t offset) {
  const index_t blocks = (n + 3) / 4;
  for (index_t b = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; b < blocks;
       b += static_cast<index_t>(gridDim.x) * blockDim.x) {
    float z[4];
    normal_block(seed, offset, static_cast<std::uint64_t>(b), mean, stddev, z);
    for (int j = 0; j < 4; ++j) {
      const index_t i = 4 * b + j;
      if (i < n) out[i] = z[j];
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void uniform_fill(float* out, index_t n, float low, float high, std::uint64_t seed, std::uint64_t offset,
                  const Exec& exec) {
  if (n == 0) return;
  uniform_kernel<<<detail::grid_for((n + 3) / 4), detail::kBlock, 0, detail::stream_of(exec)>>>(out, n, low, high,
                                                                                               seed, offset);
  GPUDL_CHECK_LAUNCH();
}

void normal_fill(float* out, index_t n, float mean, float stddev, std::uint64_t seed, std::uint64_t offset,
                 const Exec& exec) {
  if (n == 0) return;
  normal_kernel<<<detail::grid_for((n + 3) / 4), detail::kBlock, 0, detail::stream_of(exec)>>>(out, n, mean, stddev,
                                                                                              seed, offset);
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
