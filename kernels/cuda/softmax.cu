// CUDA softmax, log-softmax and fused cross-entropy, one warp per row; twins of kernels/cpu/softmax.cpp.
#include <cmath>

#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/softmax.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

constexpr int kWarpsPerBlock = 8;

__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Row index handled by this warp, or -1 when the grid has run past the rows.
__device__ index_t warp_row(index_t rows) {
  const index_t row = static_cast<index_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  return row < rows ? row : -1;
}

__global__ void softmax_forward_kernel(float* y, const float* x, index_t rows, index_t cols, bool log) {
  const index_t row = warp_row(rows);
  if (row < 0) return;
  const unsigned lane = threadIdx.x % 32;
  const float* xr = x + row * cols;
  float m = -INFINITY;
  for (index_t c = lane; c < cols; c += 32) m = fmaxf(m, xr[c]);
  m = warp_max(m);
  float sum = 0.0f;
  for (index_t c = lane; c < cols; c += 32) sum += expf(xr[c] - m);
  sum = warp_sum(sum);
  const float log_sum = logf(sum);
  for (index_t c = lane; c < cols; c += 32) y[row * cols + c] = log ? (xr[c] - m) - log_sum : expf(xr[c] - m) / sum;
}

__global__ void softmax_backward_kernel(float* dx, const float* dy, const float* y, index_t rows, index_t cols,
                                        bool log) {
  const index_t row = warp_row(rows);
  if (row < 0) return;
  const unsigned lane = threadIdx.x % 32;
  const float* dyr = dy + row * cols;
  const float* yr = y + row * cols;
  float dot = 0.0f;
  for (index_t c = lane; c < cols; c += 32) dot += log ? dyr[c] : dyr[c] * yr[c];
  dot = warp_sum(dot);
  for (index_t c = lane; c < cols; c += 32) {
    dx[row * cols + c] = log ? dyr[c] - expf(yr[c]) * dot : yr[c] * (dyr[c] - dot);
  }
}

// One row's cross-entropy, by the 32 lanes of a warp: writes the row's gradient and returns
// its loss (NaN for a label outside [0, cols)) and whether its argmax hit the label; the
// returned values are the same on every lane.
__device__ void cross_entropy_row(float* row_loss, float* row_hit, float* dlogits, const float* logits,
                                  const std::int64_t* labels, index_t row, index_t cols, float smoothing,
                                  float grad_scale) {
  const unsigned lane = threadIdx.x % 32;
  const float* xr = logits + row * cols;
  const std::int64_t label = labels[row];
  const bool valid = label >= 0 && label < cols;
  const float off = smoothing / static_cast<float>(cols);
  // Running maximum with the first index that reaches it, merged across lanes below.
  float m = -INFINITY;
  index_t arg = cols;
  for (index_t c = lane; c < cols; c += 32) {
    if (xr[c] > m) m = xr[c], arg = c;
  }
  for (int o = 16; o > 0; o /= 2) {
    const float om = __shfl_xor_sync(0xffffffffu, m, o);
    const index_t oa = __shfl_xor_sync(0xffffffffu, arg, o);
    if (om > m || (om == m && oa < arg)) m = om, arg = oa;
  }
  float sum = 0.0f, qx = 0.0f;
  for (index_t c = lane; c < cols; c += 32) {
    sum += expf(xr[c] - m);
    qx += (off + (c == label ? 1.0f - smoothing : 0.0f)) * (xr[c] - m);
  }
  sum = warp_sum(sum);
  qx = warp_sum(qx);
  *row_loss = valid ? logf(sum) - qx : NAN;
  *row_hit = valid && arg == label ? 1.0f : 0.0f;
  if (dlogits != nullptr) {
    for (index_t c = lane; c < cols; c += 32) {
      const float q = off + (c == label ? 1.0f - smoothing : 0.0f);
      dlogits[row * cols + c] = valid ? grad_scale * (expf(xr[c] - m) / sum - q) : NAN;
    }
  }
}

__global__ void cross_entropy_kernel(float* loss_sum, float* correct, float* dlogits, const float* logits,
                                     const std::int64_t* labels, index_t rows, index_t cols, float smoothing,
                                     float loss_scale, float grad_scale) {
  const index_t row = warp_row(rows);
  if (row < 0) return;
  float loss = 0.0f, hit = 0.0f;
  cross_entropy_row(&loss, &hit, dlogits, logits, labels, row, cols, smoothing, grad_scale);
  if (threadIdx.x % 32 == 0) {
    atomicAdd(loss_sum, loss_scale * loss);
    if (correct != nullptr && hit != 0.0f) atomicAdd(correct, 1.0f);
  }
}

// Deterministic mode: one block; warp w takes rows w, w + kWarpsPerBlock, ... and the warps'
// sums meet in warp order, so the loss sum is the same in every run.
__global__ void cross_entropy_ordered_kernel(float* loss_sum, float* correct, float* dlogits, const float* logits,
                                             const std::int64_t* labels, index_t rows, index_t cols, float smoothing,
                                             float loss_scale, float grad_scale) {
  __shared__ float warp_loss[kWarpsPerBlock], warp_hits[kWarpsPerBlock];
  const unsigned warp = threadIdx.x / 32;
  float loss = 0.0f, hits = 0.0f;
  for (index_t row = warp; row < rows; row += kWarpsPerBlock) {
    float l = 0.0f, h = 0.0f;
    cross_entropy_row(&l, &h, dlogits, logits, labels, row, cols, smoothing, grad_scale);
    loss += loss_scale * l;
    hits += h;
  }
  if (threadIdx.x % 32 == 0) warp_loss[warp] = loss, warp_hits[warp] = hits;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f, total_hits = 0.0f;
    for (int w = 0; w < kWarpsPerBlock; ++w) total += warp_loss[w], total_hits += warp_hits[w];
    *loss_sum += total;
    if (correct != nullptr) *correct += total_hits;
  }
}

unsigned row_blocks(index_t rows) { return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void softmax_forward(float* y, const float* x, index_t rows, index_t cols, bool log, const Exec& exec) {
  if (rows == 0 || cols == 0) return;
  softmax_forward_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, detail::stream_of(exec)>>>(y, x, rows, cols, log);
  GPUDL_CHECK_LAUNCH();
}

void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols, bool log,
                      const Exec& exec) {
  if (rows == 0 || cols == 0) return;
  softmax_backward_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, detail::stream_of(exec)>>>(dx, dy, y, rows,
                                                                                                cols, log);
  GPUDL_CHECK_LAUNCH();
}

void cross_entropy_forward_backward(float* loss_sum, float* correct, float* dlogits, const float* logits,
                                    const std::int64_t* labels, index_t rows, index_t cols, float smoothing,
                                    float loss_scale, float grad_scale, const Exec& exec) {
  if (rows == 0 || cols == 0) return;
  if (exec.deterministic) {
    cross_entropy_ordered_kernel<<<1, kWarpsPerBlock * 32, 0, detail::stream_of(exec)>>>(
        loss_sum, correct, dlogits, logits, labels, rows, cols, smoothing, loss_scale, grad_scale);
  } else {
    cross_entropy_kernel<<<row_blocks(rows), kWarpsPerBlock * 32, 0, detail::stream_of(exec)>>>(
        loss_sum, correct, dlogits, logits, labels, rows, cols, smoothing, loss_scale, grad_scale);
  }
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
