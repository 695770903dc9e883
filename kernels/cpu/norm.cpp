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

// The fused epilogue: + residual, then ReLU.
template <class T>
inline float epilogue(float v, const T* residual, bool relu, index_t i) {
  if (residual != nullptr) v += load(residual[i]);
  // NaN passes the ReLU, as the ReLU layer lets it, so that it is seen.
  return relu && !(v > 0.0f) && v == v ? 0.0f : v;
}

template <class T>
void forward_train(T* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var, const T* x,
                   const T* residual, const float* gamma, const float* beta, index_t n, index_t c, index_t inner,
                   float eps, float momentum, bool relu) {
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
      for_channel(n, c, inner, ch, [&](index_t i) {
        y[i] = store<T>(epilogue((load(x[i]) - meanf) * scale + shift, residual, relu, i));
      });
      save_mean[ch] = meanf;
      save_invstd[ch] = invstd;
      const double unbiased = m > 1.0 ? sq / (m - 1.0) : var;
      running_mean[ch] = static_cast<float>((1.0 - momentum) * running_mean[ch] + momentum * mean);
      running_var[ch] = static_cast<float>((1.0 - momentum) * running_var[ch] + momentum * unbiased);
    }
  });
}

template <class T>
void forward_eval(T* y, const T* x, const T* residual, const float* running_mean, const float* running_var,
                  const float* gamma, const float* beta, index_t n, index_t c, index_t inner, float eps, bool relu) {
  // Channels are independent: each thread takes a run of them.
  parallel_for(c, 1, [&](index_t c0, index_t c1) {
    for (index_t ch = c0; ch < c1; ++ch) {
      const float invstd = 1.0f / std::sqrt(running_var[ch] + eps);
      const float mean = running_mean[ch], scale = gamma[ch] * invstd, shift = beta[ch];
      for_channel(n, c, inner, ch, [&](index_t i) {
        y[i] = store<T>(epilogue((load(x[i]) - mean) * scale + shift, residual, relu, i));
      });
    }
  });
}

template <class T>
void backward(T* dx, T* dresidual, float* dgamma, float* dbeta, const T* dy, const T* x, const T* y,
              const float* save_mean, const float* save_invstd, const float* gamma, index_t n, index_t c, index_t inner,
              bool relu) {
  const double m = static_cast<double>(n * inner);
  // dy through the ReLU: zero where the output was.
  const auto grad = [&](index_t i) { return relu && !(load(y[i]) > 0.0f) ? 0.0f : load(dy[i]); };
  // Channels are independent: each thread takes a run of them.
  parallel_for(c, 1, [&](index_t c0, index_t c1) {
    for (index_t ch = c0; ch < c1; ++ch) {
      const float mean = save_mean[ch], invstd = save_invstd[ch];
      const double sum_dy = channel_sum(n, c, inner, ch, grad);
      const double sum_dy_xhat =
          channel_sum(n, c, inner, ch, [&](index_t i) { return grad(i) * (load(x[i]) - mean) * invstd; });
      dgamma[ch] += static_cast<float>(sum_dy_xhat);
      dbeta[ch] += static_cast<float>(sum_dy);
      const float k = gamma[ch] * invstd / static_cast<float>(m);
      const float sdy = static_cast<float>(sum_dy), sdx = static_cast<float>(sum_dy_xhat);
      const float mf = static_cast<float>(m);
      for_channel(n, c, inner, ch, [&](index_t i) {
        const float g = grad(i);
        if (dresidual != nullptr) dresidual[i] = store<T>(g);
        const float xhat = (load(x[i]) - mean) * invstd;
        dx[i] = store<T>(k * (mf * g - sdy - xhat * sdx));
      });
    }
  });
}

}  // namespace

void batchnorm_forward_train_fused(void* y, float* save_mean, float* save_invstd, float* running_mean,
                                   float* running_var, const void* x, const void* residual, const float* gamma,
                                   const float* beta, DType type, index_t n, index_t c, index_t inner, float eps,
                                   float momentum, bool relu, float* /*scratch*/, const Exec&) {
  detail::with_float_type(type, "batch norm", [&](auto tag) {
    using T = decltype(tag);
    forward_train(static_cast<T*>(y), save_mean, save_invstd, running_mean, running_var, static_cast<const T*>(x),
                  static_cast<const T*>(residual), gamma, beta, n, c, inner, eps, momentum, relu);
  });
}

void batchnorm_forward_eval_fused(void* y, const void* x, const void* residual, const float* running_mean,
                                  const float* running_var, const float* gamma, const float* beta, DType type,
                                  index_t n, index_t c, index_t inner, float eps, bool relu, const Exec&) {
  detail::with_float_type(type, "batch norm", [&](auto tag) {
    using T = decltype(tag);
    forward_eval(static_cast<T*>(y), static_cast<const T*>(x), static_cast<const T*>(residual), running_mean,
                 running_var, gamma, beta, n, c, inner, eps, relu);
  });
}

void batchnorm_backward_fused(void* dx, void* dresidual, float* dgamma, float* dbeta, const void* dy, const void* x,
                              const void* y, const float* save_mean, const float* save_invstd, const float* gamma,
                              DType type, index_t n, index_t c, index_t inner, bool relu, float* /*scratch*/,
                              const Exec&) {
  if (relu && y == nullptr) throw ValueError("batch norm backward: the fused ReLU needs the forward's output");
  detail::with_float_type(type, "batch norm", [&](auto tag) {
    using T = decltype(tag);
    backward(static_cast<T*>(dx), static_cast<T*>(dresidual), dgamma, dbeta, static_cast<const T*>(dy),
             static_cast<const T*>(x), static_cast<const T*>(y), save_mean, save_invstd, gamma, n, c, inner, relu);
  });
}

}  // namespace gpudl::kernels::cpu
