// CUDA batch normalisation, one block per channel; twins of kernels/cpu/norm.cpp.
#include <cmath>

#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/norm.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

// Element k of channel ch, k in [0, n * inner).
__device__ inline index_t channel_index(index_t k, index_t c, index_t inner, index_t ch) {
  return ((k / inner) * c + ch) * inner + k % inner;
}

__global__ void batchnorm_forward_train_kernel(float* y, float* save_mean, float* save_invstd, float* running_mean,
                                               float* running_var, const float* x, const float* gamma,
                                               const float* beta, index_t n, index_t c, index_t inner, float eps,
                                               float momentum) {
  const index_t ch = blockIdx.x;
  const index_t m = n * inner;
  float sum = 0.0f;
  for (index_t k = threadIdx.x; k < m; k += blockDim.x) sum += x[channel_index(k, c, inner, ch)];
  const float mean = detail::block_sum(sum) / static_cast<float>(m);
  float sq = 0.0f;
  for (index_t k = threadIdx.x; k < m; k += blockDim.x) {
    const float d = x[channel_index(k, c, inner, ch)] - mean;
    sq += d * d;
  }
  sq = detail::block_sum(sq);
  const float var = sq / static_cast<float>(m);
  const float invstd = 1.0f / sqrtf(var + eps);
  for (index_t k = threadIdx.x; k < m; k += blockDim.x) {
    const index_t i = channel_index(k, c, inner, ch);
    y[i] = gamma[ch] * (x[i] - mean) * invstd + beta[ch];
  }
  if (threadIdx.x == 0) {
    save_mean[ch] = mean;
    save_invstd[ch] = invstd;
    const float unbiased = m > 1 ? sq / static_cast<float>(m - 1) : var;
    running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * mean;
    running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * unbiased;
  }
}

__global__ void batchnorm_forward_eval_kernel(float* y, const float* x, const float* running_mean,
                                              const float* running_var, const float* gamma, const float* beta,
                                              index_t n, index_t c, index_t inner, float eps) {
  const index_t total = n * c * inner;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t ch = (i / inner) % c;
    y[i] = gamma[ch] * (x[i] - running_mean[ch]) * (1.0f / sqrtf(running_var[ch] + eps)) + beta[ch];
  }
}

__global__ void batchnorm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                                          const float* save_mean, const float* save_invstd, const float* gamma,
                                          index_t n, index_t c, index_t inner) {
  const index_t ch = blockIdx.x;
  const index_t m = n * inner;
  const float mean = save_mean[ch], invstd = save_invstd[ch];
  float sdy = 0.0f, sdx = 0.0f;
  for (index_t k = threadIdx.x; k < m; k += blockDim.x) {
    const index_t i = channel_index(k, c, inner, ch);
    sdy += dy[i];
    sdx += dy[i] * (x[i] - mean) * invstd;
  }
  sdy = detail::block_sum(sdy);
  sdx = detail::block_sum(sdx);
  if (threadIdx.x == 0) {
    dgamma[ch] += sdx;
    dbeta[ch] += sdy;
  }
  const float k_scale = gamma[ch] * invstd / static_cast<float>(m);
  for (index_t k = threadIdx.x; k < m; k += blockDim.x) {
    const index_t i = channel_index(k, c, inner, ch);
    const float xhat = (x[i] - mean) * invstd;
    dx[i] = k_scale * (static_cast<float>(m) * dy[i] - sdy - xhat * sdx);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void batchnorm_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                             const float* x, const float* gamma, const float* beta, index_t n, index_t c,
                             index_t inner, float eps, float momentum, const Exec& exec) {
  if (c == 0 || n * inner == 0) return;
  batchnorm_forward_train_kernel<<<static_cast<unsigned>(c), detail::kBlock, 0, detail::stream_of(exec)>>>(
      y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta, n, c, inner, eps, momentum);
  GPUDL_CHECK_LAUNCH();
}

void batchnorm_forward_eval(float* y, const float* x, const float* running_mean, const float* running_var,
                            const float* gamma, const float* beta, index_t n, index_t c, index_t inner, float eps,
                            const Exec& exec) {
  if (n * c * inner == 0) return;
  batchnorm_forward_eval_kernel<<<detail::grid_for(n * c * inner), detail::kBlock, 0, detail::stream_of(exec)>>>(
      y, x, running_mean, running_var, gamma, beta, n, c, inner, eps);
  GPUDL_CHECK_LAUNCH();
}

void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                        const float* save_mean, const float* save_invstd, const float* gamma, index_t n, index_t c,
                        index_t inner, const Exec& exec) {
  if (c == 0 || n * inner == 0) return;
  batchnorm_backward_kernel<<<static_cast<unsigned>(c), detail::kBlock, 0, detail::stream_of(exec)>>>(
      dx, dgamma, dbeta, dy, x, save_mean, save_invstd, gamma, n, c, inner);
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
