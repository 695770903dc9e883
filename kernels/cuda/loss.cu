// CUDA element-wise losses with a block reduction of the loss; twin of kernels/cpu/loss.cpp.
#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/loss.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

__global__ void element_loss_kernel(float* loss_sum, float* correct, float* grad, const float* x, const float* target,
                                    index_t n, ElementLossKind kind, float margin, float loss_scale,
                                    float grad_scale) {
  __shared__ float warp_loss[32], warp_hits[32];
  float loss = 0.0f, hits = 0.0f;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const ElementLoss e = element_loss(kind, x[i], target[i], margin);
    loss += e.loss;
    hits += e.hit;
    if (grad != nullptr) grad[i] = grad_scale * e.grad;
  }
  for (int o = 16; o > 0; o /= 2) {
    loss += __shfl_down_sync(0xffffffffu, loss, o);
    hits += __shfl_down_sync(0xffffffffu, hits, o);
  }
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_loss[warp] = loss, warp_hits[warp] = hits;
  __syncthreads();
  if (warp == 0) {
    const unsigned warps = blockDim.x / 32;
    loss = lane < warps ? warp_loss[lane] : 0.0f;
    hits = lane < warps ? warp_hits[lane] : 0.0f;
    for (int o = 16; o > 0; o /= 2) {
      loss += __shfl_down_sync(0xffffffffu, loss, o);
      hits += __shfl_down_sync(0xffffffffu, hits, o);
    }
    if (lane == 0) {
      atomicAdd(loss_sum, loss_scale * loss);
      if (correct != nullptr) atomicAdd(correct, hits);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void element_loss_forward_backward(float* loss_sum, float* correct, float* grad, const float* x, const float* target,
                                   index_t n, ElementLossKind kind, float margin, float loss_scale, float grad_scale,
                                   const Exec& exec) {
  if (n == 0) return;
  // Few blocks: each adds one partial sum atomically, so fewer blocks means fewer atomics.
  // Deterministic mode: one block, whose single add has nothing to race with.
  const unsigned blocks = exec.deterministic ? 1u : std::min(detail::grid_for(n), 1024u);
  element_loss_kernel<<<blocks, detail::kBlock, 0, detail::stream_of(exec)>>>(loss_sum, correct, grad, x, target, n,
                                                                             kind, margin, loss_scale, grad_scale);
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
