// CPU reference implementation of batch normalisation (double accumulation of the statistics).
#include "gpudl/kernels/norm.h"

#include <cmath>

namespace gpudl::kernels::cpu {
namespace {

// Calls fn(index) for every element of channel ch.
template <class Fn>
void for_channel(index_t n, index_t c, index_t inner, index_t ch, Fn fn) {
  for (index_t b = 0; b < n; ++b) {
    const index_t base = (b * c + ch) * inner;
    for (index_t i = 0; i < inner; ++i) fn(base + i);
  }
}

}  // namespace

void batchnorm_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var,
                             const float* x, const float* gamma, const float* beta, index_t n, index_t c,
                             index_t inner, float eps, float momentum, const Exec&) {
  const double m = static_cast<double>(n * inner);
  for (index_t ch = 0; ch < c; ++ch) {
    double sum = 0.0;
    for_channel(n, c, inner, ch, [&](index_t i) { sum += x[i]; });
    const double mean = sum / m;
    double sq = 0.0;
    for_channel(n, c, inner, ch, [&](index_t i) { sq += (x[i] - mean) * (x[i] - mean); });
    const double var = sq / m;
    const float invstd = static_cast<float>(1.0 / std::sqrt(var + eps));
    const float meanf = static_cast<float>(mean);
    for_channel(n, c, inner, ch, [&](index_t i) { y[i] = gamma[ch] * (x[i] - meanf) * invstd + beta[ch]; });
    save_mean[ch] = meanf;
    save_invstd[ch] = invstd;
    const double unbiased = m > 1.0 ? sq / (m - 1.0) : var;
    running_mean[ch] = static_cast<float>((1.0 - momentum) * running_mean[ch] + momentum * mean);
    running_var[ch] = static_cast<float>((1.0 - momentum) * running_var[ch] + momentum * unbiased);
  }
}

void batchnorm_forward_eval(float* y, const float* x, const float* running_mean, const float* running_var,
                            const float* gamma, const float* beta, index_t n, index_t c, index_t inner, float eps,
                            const Exec&) {
  for (index_t ch = 0; ch < c; ++ch) {
    const float invstd = 1.0f / std::sqrt(running_var[ch] + eps);
    for_channel(n, c, inner, ch,
                [&](index_t i) { y[i] = gamma[ch] * (x[i] - running_mean[ch]) * invstd + beta[ch]; });
  }
}

void batchnorm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                        const float* save_mean, const float* save_invstd, const float* gamma, index_t n, index_t c,
                        index_t inner, const Exec&) {
  const double m = static_cast<double>(n * inner);
  for (index_t ch = 0; ch < c; ++ch) {
    const float mean = save_mean[ch], invstd = save_invstd[ch];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for_channel(n, c, inner, ch, [&](index_t i) {
      sum_dy += dy[i];
      sum_dy_xhat += dy[i] * (x[i] - mean) * invstd;
    });
    dgamma[ch] += static_cast<float>(sum_dy_xhat);
    dbeta[ch] += static_cast<float>(sum_dy);
    const float k = gamma[ch] * invstd / static_cast<float>(m);
    const float sdy = static_cast<float>(sum_dy), sdx = static_cast<float>(sum_dy_xhat);
    for_channel(n, c, inner, ch, [&](index_t i) {
      const float xhat = (x[i] - mean) * invstd;
      dx[i] = k * (static_cast<float>(m) * dy[i] - sdy - xhat * sdx);
    });
  }
}

}  // namespace gpudl::kernels::cpu
