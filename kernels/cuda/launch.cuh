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

}  // namespace gpudl::kernels::cuda::detail
