// CUDA optimizer update and gradient-clipping kernels; twins of kernels/cpu/optim.cpp.
#include <algorithm>

#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/optim.h"

namespace gpudl::kernels::cuda {
namespace {

// A block-sum reduction needs one atomicAdd per block; this many blocks keep the atomics few
// (and the float sum of their partials accurate) while still filling an H100 several times over.
constexpr unsigned kMaxReduceBlocks = 1024;

// ---------------------------------------------------------------------------------------------
// kernels

// Each kernel reads the step's changing values (learning rate, Adam's folded bias corrections)
// from `values` in device memory: one load per thread, from a line every thread shares.
__global__ void sgd_kernel(float* param, const float* grad, float* momentum_buf, index_t n, SgdStep s,
                           const float* values) {
  s.lr = values[0];
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    float p = param[i];
    float buf = momentum_buf != nullptr ? momentum_buf[i] : 0.0f;
    sgd_element(p, grad[i], buf, s);
    param[i] = p;
    if (momentum_buf != nullptr) momentum_buf[i] = buf;
  }
}

__global__ void adagrad_kernel(float* param, const float* grad, float* sum_sq, index_t n, AdagradStep s,
                               const float* values) {
  s.lr = values[0];
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    float p = param[i], acc = sum_sq[i];
    adagrad_element(p, grad[i], acc, s);
    param[i] = p;
    sum_sq[i] = acc;
  }
}

__global__ void rmsprop_kernel(float* param, const float* grad, float* square_avg, float* momentum_buf, index_t n,
                               RmspropStep s, const float* values) {
  s.lr = values[0];
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    float p = param[i], sq = square_avg[i];
    float buf = momentum_buf != nullptr ? momentum_buf[i] : 0.0f;
    rmsprop_element(p, grad[i], sq, buf, s);
    param[i] = p;
    square_avg[i] = sq;
    if (momentum_buf != nullptr) momentum_buf[i] = buf;
  }
}

__global__ void adadelta_kernel(float* param, const float* grad, float* square_avg, float* acc_delta, index_t n,
                                AdadeltaStep s, const float* values) {
  s.lr = values[0];
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    float p = param[i], sq = square_avg[i], acc = acc_delta[i];
    adadelta_element(p, grad[i], sq, acc, s);
    param[i] = p;
    square_avg[i] = sq;
    acc_delta[i] = acc;
  }
}

__global__ void adam_kernel(float* param, const float* grad, float* m, float* v, index_t n, AdamStep s,
                            const float* values) {
  s.step_size = values[0];
  s.sqrt_bc2 = values[1];
  s.decay = values[2];
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    float p = param[i], mi = m[i], vi = v[i];
    adam_element(p, grad[i], mi, vi, s);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

__global__ void write_values_kernel(float* dst, ValueBlock block) {
  if (static_cast<int>(threadIdx.x) < block.count) dst[threadIdx.x] = block.values[threadIdx.x];
}

// Each thread sums its grid-stride share, the block combines them through warp shuffles, and
// one thread per block adds the block's partial to the scalar.
__global__ void sum_squares_kernel(float* accumulator, const float* x, index_t n) {
  __shared__ float warp_sums[32];
  float s = 0.0f;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    s += x[i] * x[i];
  }
  for (unsigned offset = 16; offset > 0; offset /= 2) s += __shfl_down_sync(0xffffffffu, s, offset);
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = s;
  __syncthreads();
  if (warp == 0) {
    s = lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f;
    for (unsigned offset = 16; offset > 0; offset /= 2) s += __shfl_down_sync(0xffffffffu, s, offset);
    if (lane == 0) atomicAdd(accumulator, s);
  }
}

__global__ void norm_kernel(float* norm, const float* sum_squares) { *norm = sqrtf(*sum_squares); }

__global__ void clip_kernel(float* x, index_t n, const float* total_sum_squares, float max_norm) {
  const float c = clip_coefficient(*total_sum_squares, max_norm);
  if (c == 1.0f) return;  // x * 1 == x exactly: save the memory traffic
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    x[i] *= c;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void sgd_update(float* param, const float* grad, float* momentum_buf, index_t n, const float* values, float momentum,
                float dampening, float weight_decay, bool nesterov, bool first_step, const Exec& exec) {
  if (n == 0) return;
  const SgdStep s{0.0f, momentum, dampening, weight_decay, nesterov, first_step};
  sgd_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(
      param, grad, momentum != 0.0f ? momentum_buf : nullptr, n, s, values);
  GPUDL_CHECK_LAUNCH();
}

void adagrad_update(float* param, const float* grad, float* sum_sq, index_t n, const float* values, float eps,
                    float weight_decay, const Exec& exec) {
  if (n == 0) return;
  adagrad_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(
      param, grad, sum_sq, n, AdagradStep{0.0f, eps, weight_decay}, values);
  GPUDL_CHECK_LAUNCH();
}

void rmsprop_update(float* param, const float* grad, float* square_avg, float* momentum_buf, index_t n,
                    const float* values, float alpha, float eps, float weight_decay, float momentum,
                    const Exec& exec) {
  if (n == 0) return;
  rmsprop_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(
      param, grad, square_avg, momentum > 0.0f ? momentum_buf : nullptr, n,
      RmspropStep{0.0f, alpha, eps, weight_decay, momentum}, values);
  GPUDL_CHECK_LAUNCH();
}

void adadelta_update(float* param, const float* grad, float* square_avg, float* acc_delta, index_t n,
                     const float* values, float rho, float eps, float weight_decay, const Exec& exec) {
  if (n == 0) return;
  adadelta_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(
      param, grad, square_avg, acc_delta, n, AdadeltaStep{0.0f, rho, eps, weight_decay}, values);
  GPUDL_CHECK_LAUNCH();
}

void adam_update(float* param, const float* grad, float* m, float* v, index_t n, const float* values, float beta1,
                 float beta2, float eps, float weight_decay, bool decoupled_weight_decay, const Exec& exec) {
  if (n == 0) return;
  const AdamStep s{beta1, beta2, eps, weight_decay, 0.0f, 1.0f, 1.0f, decoupled_weight_decay};
  adam_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(param, grad, m, v, n, s, values);
  GPUDL_CHECK_LAUNCH();
}

void write_values(float* dst, const ValueBlock& block, const Exec& exec) {
  if (block.count <= 0) return;
  write_values_kernel<<<1, kValueBlock, 0, detail::stream_of(exec)>>>(dst, block);
  GPUDL_CHECK_LAUNCH();
}

void sum_squares(float* accumulator, const float* x, index_t n, const Exec& exec) {
  if (n == 0) return;
  // Deterministic mode: one block, so the partial sums meet in one fixed order.
  const unsigned blocks = exec.deterministic ? 1u : std::min(detail::grid_for(n), kMaxReduceBlocks);
  sum_squares_kernel<<<blocks, detail::kBlock, 0, detail::stream_of(exec)>>>(accumulator, x, n);
  GPUDL_CHECK_LAUNCH();
}

void norm_from_sum_squares(float* norm, const float* sum_squares, const Exec& exec) {
  norm_kernel<<<1, 1, 0, detail::stream_of(exec)>>>(norm, sum_squares);
  GPUDL_CHECK_LAUNCH();
}

void clip_by_norm(float* x, index_t n, const float* total_sum_squares, float max_norm, const Exec& exec) {
  if (n == 0) return;
  clip_kernel<<<detail::grid_for(n), detail::kBlock, 0, detail::stream_of(exec)>>>(x, n, total_sum_squares,
                                                                                     max_norm);
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
