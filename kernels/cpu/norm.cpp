// CPU implementation of batch normalisation: float lanes within a plane, double across planes.
#include "gpudl/kernels/norm.h"

#include <cmath>

#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/dispatch.h"

namespace gpudl::kernels::cpu {
namespace {

constexpr index_t kLanes = 8;

// Reduces f(i) over [0, n) into 8 independent float lanes (so the loop vectorises and no
// serial double chain bounds it) and returns their sum in double. Each lane adds at most
// n / 8 terms of one plane; the planes of a channel are then summed in double.
template <class Fn>
double lane_sum(index_t n, Fn f) {
  float lanes[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (index_t j = 0; j < kLanes; ++j) lanes[j] += f(i + j);
  }
  double sum = 0.0;
  for (float lane : lanes) sum += lane;
  for (; i < n; ++i) sum += f(i);
  return sum;
}

// Sum over channel ch of f(plane, i), plane by plane.
template <class Fn>
double channel_sum(index_t n, index_t c, index_t inner, index_t ch, Fn f) {
  double sum = 0.0;
  for (index_t b = 0; b < n; ++b) {
    const index_t base = (b * c + ch) * inner;
    sum += lane_sum(inner, [&](index_t i) { return f(base + i); });
  }
  return sum;
}

// Calls fn(index) for every element of channel ch.
template <class Fn>
void for_channel(index_t n, index_t c, index_t inner, index_t ch, Fn fn) {
  for (index_t b = 0; b < n; ++b) {
    const index_t base = (b * c + ch) * inner;
    for (index_t i = 0; i < inner; ++i) fn(base + i);
  }
}

template <class T>
void forward_train(T* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var, const T* x,
                   const float* gamma, const float* beta, index_t n, index_t c, index_t inner, float eps,
                   float momentum) {
  const double m = static_cast<double>(n * inner);
  // Channels are independent: each thread takes a run of them.
  parallel_for(c, 1, [&](index_t c0, index_t c1) {
    for (index_t ch = c0; ch < c1; ++ch) {
      const double mean = channel_sum(n, c, inner, ch, [&](index_t i) { return load(x[i]); }) / m;
      const float meanf = static_cast<float>(mean);
      // Two passes (mean, then squared deviations) rather than E[x²] - E[x]², which cancels.
      const double sq = channel_sum(n, c, inner, ch, [&](index_t i) {
        const float d = load(x[i]) - meanf;
        return d * d;
      });
      const double var = sq / m;
      const float invstd = static_cast<float>(1.0 / std::sqrt(var + eps));
      const float scale = gamma[ch] * invstd, shift = beta[ch];
      for_channel(n, c, inner, ch, [&](index_t i) { y[i] = store<T>((load(x[i]) - meanf) * scale + shift); });
      save_mean[ch] = meanf;
      save_invstd[ch] = invstd;
      const double unbiased = m > 1.0 ? sq / (m - 1.0) : var;
      running_mean[ch] = static_cast<float>((1.0 - momentum) * running_mean[ch] + momentum * mean);
      running_var[ch] = static_cast<float>((1.0 - momentum) * running_var[ch] + momentum * unbiased);
    }
  });
}

template <class T>
void forward_eval(T* y, const T* x, const float* running_mean, const float* running_var, const float* gamma,
                  const float* beta, index_t n, index_t c, index_t inner, float eps) {
  // Channels are independent: each thread takes a run of them.
  parallel_for(c, 1, [&](index_t c0, index_t c1) {
    for (index_t ch = c0; ch < c1; ++ch) {
      const float invstd = 1.0f / std::sqrt(running_var[ch] + eps);
      const float mean = running_mean[ch], scale = gamma[ch] * invstd, shift = beta[ch];
      for_channel(n, c, inner, ch, [&](index_t i) { y[i] = store<T>((load(x[i]) - mean) * scale + shift); });
    }
  });
}

template <class T>
void backward(T* dx, float* dgamma, float* dbeta, const T* dy, const T* x, const float* save_mean,
              const float* save_invstd, const float* gamma, index_t n, index_t c, index_t inner) {
  const double m = static_cast<double>(n * inner);
  // Channels are independent: each thread takes a run of them.
  parallel_for(c, 1, [&](index_t c0, index_t c1) {
    for (index_t ch = c0; ch < c1; ++ch) {
      const float mean = save_mean[ch], invstd = save_invstd[ch];
      const double sum_dy = channel_sum(n, c, inner, ch, [&](index_t i) { return load(dy[i]); });
      const double sum_dy_xhat =
          channel_sum(n, c, inner, ch, [&](index_t i) { return load(dy[i]) * (load(x[i]) - mean) * invstd; });
      dgamma[ch] += static_cast<float>(sum_dy_xhat);
      dbeta[ch] += static_cast<float>(sum_dy);
      const float k = gamma[ch] * invstd / static_cast<float>(m);
      const float sdy = static_cast<float>(sum_dy), sdx = static_cast<float>(sum_dy_xhat);
      const float mf = static_cast<float>(m);
      for_channel(n, c, inner, ch, [&](index_t i) {
        const float xhat = (load(x[i]) - mean) * invstd;
        dx[i] = store<T>(k * (mf * load(dy[i]) - sdy - xhat * sdx));
      });
    }
  });
}

}  // namespace

void batchnorm_forward_train(void* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                             const void* x, const float* gamma, const float* beta, DType type, index_t n, index_t c,
                             index_t inner, float eps, float momentum, float* /*scratch*/, const Exec&) {
  detail::with_float_type(type, "batch norm", [&](auto tag) {
    using T = decltype(tag);
    forward_train(static_cast<T*>(y), save_mean, save_invstd, running_mean, running_var, static_cast<const T*>(x),
                  gamma, beta, n, c, inner, eps, momentum);
  });
}

void batchnorm_forward_eval(void* y, const void* x, const float* running_mean, const float* running_var,
                            const float* gamma, const float* beta, DType type, index_t n, index_t c, index_t inner,
                            float eps, const Exec&) {
  detail::with_float_type(type, "batch norm", [&](auto tag) {
    using T = decltype(tag);
    forward_eval(static_cast<T*>(y), static_cast<const T*>(x), running_mean, running_var, gamma, beta, n, c, inner,
                 eps);
  });
}

void batchnorm_backward(void* dx, float* dgamma, float* dbeta, const void* dy, const void* x, const float* save_mean,
                        const float* save_invstd, const float* gamma, DType type, index_t n, index_t c, index_t inner,
                        float* /*scratch*/, const Exec&) {
  detail::with_float_type(type, "batch norm", [&](auto tag) {
    using T = decltype(tag);
    backward(static_cast<T*>(dx), dgamma, dbeta, static_cast<const T*>(dy), static_cast<const T*>(x), save_mean,
             save_invstd, gamma, n, c, inner);
  });
}

}  // namespace gpudl::kernels::cpu
