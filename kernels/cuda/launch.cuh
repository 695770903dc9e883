// Launch helpers shared by the CUDA kernel files: stream from Exec, grid sizing.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/cuda/check.h"

namespace gpudl::kernels::cuda::detail {

inline cudaStream_t stream_of(const Exec& exec) { return static_cast<cudaStream_t>(exec.stream); }

inline constexpr int kBlock = 256;

// Enough blocks for a grid-stride loop over n elements without launching far more blocks
// than the GPU can hold at once (the loop covers the rest).
inline unsigned grid_for(index_t n, int block = kBlock) {
  const index_t blocks = (n + block - 1) / block;
  return static_cast<unsigned>(std::clamp<index_t>(blocks, 1, 65536));
}

// Sum of v over the whole block, returned to every thread. blockDim.x must be a multiple of
// 32 (at most 1024); every thread of the block must call it.
__device__ inline float block_sum(float v) {
  __shared__ float partial[32];
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < blockDim.x / 32 ? partial[lane] : 0.0f;
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace gpudl::kernels::cuda::detail
