// CUDA layer-norm kernels (one warp per row; the parameter gradients one thread per column);
// twins of kernels/cpu/layer_norm.cpp.
#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/layer_norm.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

constexpr int kWarpsPerBlock = 8;

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per row: two passes over the row (mean, then the centred squares) keep the variance
// accurate where a one-pass E[x²] - E[x]² would cancel.
__global__ void layer_norm_forward_kernel(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                                          const float* beta, index_t rows, index_t cols, float eps) {
  const index_t r = static_cast<index_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const float* xr = x + r * cols;
  float sum = 0.0f;
  for (index_t j = lane; j < cols; j += 32) sum += xr[j];
  const float m = warp_sum(sum) / static_cast<float>(cols);
  float sq = 0.0f;
  for (index_t j = lane; j < cols; j += 32) sq += (xr[j] - m) * (xr[j] - m);
  const float s = rsqrtf(warp_sum(sq) / static_cast<float>(cols) + eps);
  if (lane == 0) {
    mean[r] = m;
    rstd[r] = s;
  }
  float* yr = y + r * cols;
  for (index_t j = lane; j < cols; j += 32) {
    const float xhat = (xr[j] - m) * s;
    yr[j] = gamma != nullptr ? gamma[j] * xhat + beta[j] : xhat;
  }
}

__global__ void layer_norm_backward_dx_kernel(float* dx, const float* dy, const float* x, const float* mean,
                                              const float* rstd, const float* gamma, index_t rows, index_t cols) {
  const index_t r = static_cast<index_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const float* xr = x + r * cols;
  const float* dyr = dy + r * cols;
  const float m = mean[r], s = rstd[r];
  float sum_g = 0.0f, sum_gx = 0.0f;
  for (index_t j = lane; j < cols; j += 32) {
    const float g = gamma != nullptr ? gamma[j] * dyr[j] : dyr[j];
    sum_g += g;
    sum_gx += g * ((xr[j] - m) * s);
  }
  const float mean_g = warp_sum(sum_g) / static_cast<float>(cols);
  const float mean_gx = warp_sum(sum_gx) / static_cast<float>(cols);
  float* dxr = dx + r * cols;
  for (index_t j = lane; j < cols; j += 32) {
    const float g = gamma != nullptr ? gamma[j] * dyr[j] : dyr[j];
    dxr[j] = s * (g - mean_g - ((xr[j] - m) * s) * mean_gx);
  }
}

// One thread per column walks the rows in order: coalesced across the warp, deterministic.
__global__ void layer_norm_backward_params_kernel(float* dgamma, float* dbeta, const float* dy, const float* x,
                                                  const float* mean, const float* rstd, index_t rows, index_t cols) {
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < cols;
       j += static_cast<index_t>(gridDim.x) * blockDim.x) {
    float dg = 0.0f, db = 0.0f;
    for (index_t r = 0; r < rows; ++r) {
      const float d = dy[r * cols + j];
      dg += d * ((x[r * cols + j] - mean[r]) * rstd[r]);
      db += d;
    }
    dgamma[j] += dg;
    dbeta[j] += db;
  }
}

unsigned row_blocks(index_t rows) { return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                        index_t rows, index_t cols, float eps, const Exec& exec) {
  if (rows == 0 || cols == 0) return;
  layer_norm_forward_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, detail::stream_of(exec)>>>(
      y, mean, rstd, x, gamma, beta, rows, cols, eps);
  GPUDL_CHECK_LAUNCH();
}

void layer_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x, const float* mean,
                         const float* rstd, const float* gamma, index_t rows, index_t cols, const Exec& exec) {
  if (rows == 0 || cols == 0) return;
  layer_norm_backward_dx_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, detail::stream_of(exec)>>>(
      dx, dy, x, mean, rstd, gamma, rows, cols);
  GPUDL_CHECK_LAUNCH();
  if (dgamma == nullptr) return;
  layer_norm_backward_params_kernel<<<detail::grid_for(cols), detail::kBlock, 0, detail::stream_of(exec)>>>(
      dgamma, dbeta, dy, x, mean, rstd, rows, cols);
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
