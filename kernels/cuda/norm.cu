// CUDA batch normalisation, each channel split over several blocks; twins of kernels/cpu/norm.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "gpudl/kernels/dispatch.h"
#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/norm.h"

namespace gpudl::kernels::cuda {
namespace {

// Statistics run in three steps, every sum in a fixed order (no atomics), so results repeat bit
// for bit: (1) block (part, channel) reduces its slice of the channel to a partial; (2) one
// thread per channel merges the parts in order; (3) an element-wise pass writes the output.
// I is the index type: 32-bit where the tensor allows, since 64-bit division costs ~4x more.
// T is the type of x, y, dy and dx (float, BFloat16 or Half): loaded in FP32, stored rounded.


// Values [begin, end) of channel ch, as offsets k in [0, n * inner).
template <class I>
__device__ inline I channel_index(I k, I c, I inner, I ch) {
  return ((k / inner) * c + ch) * inner + k % inner;
}

template <class I>
__device__ inline void part_range(I m, I parts, I part, I* begin, I* end) {
  *begin = static_cast<I>(static_cast<std::uint64_t>(m) * part / parts);
  *end = static_cast<I>(static_cast<std::uint64_t>(m) * (part + 1) / parts);
}

// Per part: its mean and sum of squared deviations from that mean (two passes over the slice,
// which stays in L2), so no E[x²] - E[x]² cancellation.
// Grid y covers at most kMaxGridY channels; a block walks channels ch, ch + gridDim.y, ... so
// that more channels than a grid's y extent allows (65535) still run (the loop is uniform
// across the block, as block_sum requires).
template <class I, class T>
__global__ void bn_part_stats_kernel(float* partial, const T* x, I c, I inner, I m, I parts) {
  const I part = blockIdx.x;
  I begin, end;
  part_range(m, parts, part, &begin, &end);
  for (I ch = blockIdx.y; ch < c; ch += gridDim.y) {
    float sum = 0.0f;
    for (I k = begin + threadIdx.x; k < end; k += blockDim.x) sum += load(x[channel_index(k, c, inner, ch)]);
    const float mean = detail::block_sum(sum) / static_cast<float>(end - begin);
    float sq = 0.0f;
    for (I k = begin + threadIdx.x; k < end; k += blockDim.x) {
      const float d = load(x[channel_index(k, c, inner, ch)]) - mean;
      sq += d * d;
    }
    sq = detail::block_sum(sq);
    if (threadIdx.x == 0) {
      partial[2 * (static_cast<index_t>(ch) * parts + part)] = mean;
      partial[2 * (static_cast<index_t>(ch) * parts + part) + 1] = sq;
    }
  }
}

// Merges the parts of each channel in order (Chan et al.'s pairwise update, in double).
__global__ void bn_merge_stats_kernel(float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                                      const float* partial, index_t c, index_t m, index_t parts, float eps,
                                      float momentum) {
  const index_t ch = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (ch >= c) return;
  double count = 0.0, mean = 0.0, sq = 0.0;
  for (index_t p = 0; p < parts; ++p) {
    const double nb = static_cast<double>(m * (p + 1) / parts - m * p / parts);
    const double mb = partial[2 * (ch * parts + p)], sb = partial[2 * (ch * parts + p) + 1];
    const double total = count + nb, delta = mb - mean;
    mean += delta * nb / total;
    sq += sb + delta * delta * count * nb / total;
    count = total;
  }
  const double var = sq / count;
  save_mean[ch] = static_cast<float>(mean);
  save_invstd[ch] = static_cast<float>(1.0 / sqrt(var + eps));
  const double unbiased = count > 1.0 ? sq / (count - 1.0) : var;
  running_mean[ch] = static_cast<float>((1.0 - momentum) * running_mean[ch] + momentum * mean);
  running_var[ch] = static_cast<float>((1.0 - momentum) * running_var[ch] + momentum * unbiased);
}

// y = (x - mean) * gamma * invstd + beta with per-channel mean and invstd (train: the batch's;
// eval: from the running statistics, computed per channel as the CPU does).
// The fused epilogue (+ residual, then ReLU) runs on the value before its one rounding.
template <class I, class T>
__global__ void bn_normalize_kernel(T* y, const T* x, const T* residual, const float* mean, const float* invstd,
                                    const float* running_var, const float* gamma, const float* beta, I c, I inner,
                                    I total, float eps, bool relu) {
  for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const I ch = (i / inner) % c;
    const float is = running_var != nullptr ? 1.0f / sqrtf(running_var[ch] + eps) : invstd[ch];
    float v = (load(x[i]) - mean[ch]) * (gamma[ch] * is) + beta[ch];
    if (residual != nullptr) v += load(residual[i]);
    // NaN passes the ReLU, as the ReLU layer lets it, so that it is seen.
    y[i] = store<T>(relu && !(v > 0.0f) && v == v ? 0.0f : v);
  }
}

// dy through the fused ReLU: zero where the forward's output was.
template <class I, class T>
__device__ inline float masked_grad(const T* dy, const T* y, bool relu, I i) {
  return relu && !(load(y[i]) > 0.0f) ? 0.0f : load(dy[i]);
}

// Per part: Σ dy and Σ dy x̂ over its slice.
// Channels loop over grid y as in bn_part_stats_kernel.
template <class I, class T>
__global__ void bn_part_grads_kernel(float* partial, const T* dy, const T* x, const T* y, const float* save_mean,
                                     const float* save_invstd, I c, I inner, I m, I parts, bool relu) {
  const I part = blockIdx.x;
  I begin, end;
  part_range(m, parts, part, &begin, &end);
  for (I ch = blockIdx.y; ch < c; ch += gridDim.y) {
    const float mean = save_mean[ch], invstd = save_invstd[ch];
    float sdy = 0.0f, sdx = 0.0f;
    for (I k = begin + threadIdx.x; k < end; k += blockDim.x) {
      const I i = channel_index(k, c, inner, ch);
      const float g = masked_grad(dy, y, relu, i);
      sdy += g;
      sdx += g * (load(x[i]) - mean) * invstd;
    }
    sdy = detail::block_sum(sdy);
    sdx = detail::block_sum(sdx);
    if (threadIdx.x == 0) {
      partial[2 * (static_cast<index_t>(ch) * parts + part)] = sdy;
      partial[2 * (static_cast<index_t>(ch) * parts + part) + 1] = sdx;
    }
  }
}

// Sums each channel's parts in order into totals[2 ch + {0, 1}] and accumulates dbeta, dgamma.
__global__ void bn_merge_grads_kernel(float* totals, float* dgamma, float* dbeta, const float* partial, index_t c,
                                      index_t parts) {
  const index_t ch = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x;
  if (ch >= c) return;
  double sdy = 0.0, sdx = 0.0;
  for (index_t p = 0; p < parts; ++p) {
    sdy += partial[2 * (ch * parts + p)];
    sdx += partial[2 * (ch * parts + p) + 1];
  }
  totals[2 * ch] = static_cast<float>(sdy);
  totals[2 * ch + 1] = static_cast<float>(sdx);
  dbeta[ch] += static_cast<float>(sdy);
  dgamma[ch] += static_cast<float>(sdx);
}

template <class I, class T>
__global__ void bn_input_grad_kernel(T* dx, T* dresidual, const T* dy, const T* x, const T* y,
                                     const float* save_mean, const float* save_invstd, const float* gamma,
                                     const float* totals, I c, I inner, I total, float m, bool relu) {
  for (I i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const I ch = (i / inner) % c;
    const float mean = save_mean[ch], invstd = save_invstd[ch];
    const float k = gamma[ch] * invstd / m;
    const float xhat = (load(x[i]) - mean) * invstd;
    const float g = masked_grad(dy, y, relu, i);
    if (dresidual != nullptr) dresidual[i] = store<T>(g);
    dx[i] = store<T>(k * (m * g - totals[2 * ch] - xhat * totals[2 * ch + 1]));
  }
}

bool fits_32(index_t n, index_t c, index_t inner) {
  return n * c * inner < static_cast<index_t>(std::numeric_limits<std::int32_t>::max());
}

unsigned channel_blocks(index_t c) { return static_cast<unsigned>((c + detail::kBlock - 1) / detail::kBlock); }

// A CUDA grid's y extent stops at 65535; the per-part kernels loop over the channels beyond it.
constexpr index_t kMaxGridY = 65535;

// Grid of the per-part kernels: x = the parts of a channel, y = channels (looped past kMaxGridY).
dim3 part_grid(index_t parts, index_t c) {
  return dim3(static_cast<unsigned>(parts), static_cast<unsigned>(std::min(c, kMaxGridY)));
}

template <class I, class T>
void forward_train(T* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var, const T* x,
                   const T* residual, const float* gamma, const float* beta, index_t n, index_t c, index_t inner,
                   float eps, float momentum, bool relu, float* scratch, cudaStream_t stream) {
  const index_t m = n * inner, parts = batchnorm_parts(n, c, inner);
  bn_part_stats_kernel<I, T><<<part_grid(parts, c), detail::kBlock, 0, stream>>>(
      scratch, x, static_cast<I>(c), static_cast<I>(inner), static_cast<I>(m), static_cast<I>(parts));
  GPUDL_CHECK_LAUNCH();
  bn_merge_stats_kernel<<<channel_blocks(c), detail::kBlock, 0, stream>>>(save_mean, save_invstd, running_mean,
                                                                         running_var, scratch, c, m, parts, eps,
                                                                         momentum);
  GPUDL_CHECK_LAUNCH();
  bn_normalize_kernel<I, T><<<detail::grid_for(n * c * inner), detail::kBlock, 0, stream>>>(
      y, x, residual, save_mean, save_invstd, nullptr, gamma, beta, static_cast<I>(c), static_cast<I>(inner),
      static_cast<I>(n * c * inner), eps, relu);
  GPUDL_CHECK_LAUNCH();
}

template <class I, class T>
void backward(T* dx, T* dresidual, float* dgamma, float* dbeta, const T* dy, const T* x, const T* y,
              const float* save_mean, const float* save_invstd, const float* gamma, index_t n, index_t c, index_t inner,
              bool relu, float* scratch, cudaStream_t stream) {
  const index_t m = n * inner, parts = batchnorm_parts(n, c, inner);
  float* totals = scratch + 2 * c * parts;
  bn_part_grads_kernel<I, T><<<part_grid(parts, c), detail::kBlock, 0, stream>>>(
      scratch, dy, x, y, save_mean, save_invstd, static_cast<I>(c), static_cast<I>(inner), static_cast<I>(m),
      static_cast<I>(parts), relu);
  GPUDL_CHECK_LAUNCH();
  bn_merge_grads_kernel<<<channel_blocks(c), detail::kBlock, 0, stream>>>(totals, dgamma, dbeta, scratch, c, parts);
  GPUDL_CHECK_LAUNCH();
  bn_input_grad_kernel<I, T><<<detail::grid_for(n * c * inner), detail::kBlock, 0, stream>>>(
      dx, dresidual, dy, x, y, save_mean, save_invstd, gamma, totals, static_cast<I>(c), static_cast<I>(inner),
      static_cast<I>(n * c * inner), static_cast<float>(m), relu);
  GPUDL_CHECK_LAUNCH();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void batchnorm_forward_train_fused(void* y, float* save_mean, float* save_invstd, float* running_mean,
                                   float* running_var, const void* x, const void* residual, const float* gamma,
                                   const float* beta, DType type, index_t n, index_t c, index_t inner, float eps,
                                   float momentum, bool relu, float* scratch, const Exec& exec) {
  kernels::detail::with_float_type(type, "batchnorm_forward_train", [&](auto tag) {
    using T = decltype(tag);
    if (c == 0 || n * inner == 0) return;
    if (scratch == nullptr) throw CudaError("batchnorm_forward_train: CUDA needs a scratch buffer");
    const cudaStream_t stream = detail::stream_of(exec);
    T* yt = static_cast<T*>(y);
    const T *xt = static_cast<const T*>(x), *zt = static_cast<const T*>(residual);
    if (fits_32(n, c, inner)) {
      forward_train<std::uint32_t>(yt, save_mean, save_invstd, running_mean, running_var, xt, zt, gamma, beta, n, c,
                                   inner, eps, momentum, relu, scratch, stream);
    } else {
      forward_train<index_t>(yt, save_mean, save_invstd, running_mean, running_var, xt, zt, gamma, beta, n, c, inner,
                             eps, momentum, relu, scratch, stream);
    }
  });
}

void batchnorm_forward_eval_fused(void* y, const void* x, const void* residual, const float* running_mean,
                                  const float* running_var, const float* gamma, const float* beta, DType type,
                                  index_t n, index_t c, index_t inner, float eps, bool relu, const Exec& exec) {
  kernels::detail::with_float_type(type, "batchnorm_forward_eval", [&](auto tag) {
    using T = decltype(tag);
    if (n * c * inner == 0) return;
    const cudaStream_t stream = detail::stream_of(exec);
    T* yt = static_cast<T*>(y);
    const T *xt = static_cast<const T*>(x), *zt = static_cast<const T*>(residual);
    if (fits_32(n, c, inner)) {
      bn_normalize_kernel<std::uint32_t, T><<<detail::grid_for(n * c * inner), detail::kBlock, 0, stream>>>(
          yt, xt, zt, running_mean, nullptr, running_var, gamma, beta, static_cast<std::uint32_t>(c),
          static_cast<std::uint32_t>(inner), static_cast<std::uint32_t>(n * c * inner), eps, relu);
    } else {
      bn_normalize_kernel<index_t, T><<<detail::grid_for(n * c * inner), detail::kBlock, 0, stream>>>(
          yt, xt, zt, running_mean, nullptr, running_var, gamma, beta, c, inner, n * c * inner, eps, relu);
    }
    GPUDL_CHECK_LAUNCH();
  });
}

void batchnorm_backward_fused(void* dx, void* dresidual, float* dgamma, float* dbeta, const void* dy, const void* x,
                              const void* y, const float* save_mean, const float* save_invstd, const float* gamma,
                              DType type, index_t n, index_t c, index_t inner, bool relu, float* scratch,
                              const Exec& exec) {
  kernels::detail::with_float_type(type, "batchnorm_backward", [&](auto tag) {
    using T = decltype(tag);
    if (c == 0 || n * inner == 0) return;
    if (scratch == nullptr) throw CudaError("batchnorm_backward: CUDA needs a scratch buffer");
    if (relu && y == nullptr) throw ValueError("batch norm backward: the fused ReLU needs the forward's output");
    const cudaStream_t stream = detail::stream_of(exec);
    T *dxt = static_cast<T*>(dx), *dzt = static_cast<T*>(dresidual);
    const T *dyt = static_cast<const T*>(dy), *xt = static_cast<const T*>(x), *yt = static_cast<const T*>(y);
    if (fits_32(n, c, inner)) {
      backward<std::uint32_t>(dxt, dzt, dgamma, dbeta, dyt, xt, yt, save_mean, save_invstd, gamma, n, c, inner, relu,
                              scratch, stream);
    } else {
      backward<index_t>(dxt, dzt, dgamma, dbeta, dyt, xt, yt, save_mean, save_invstd, gamma, n, c, inner, relu,
                        scratch, stream);
    }
  });
}

}  // namespace gpudl::kernels::cuda
