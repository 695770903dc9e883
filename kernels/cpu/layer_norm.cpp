// CPU layer-norm kernels: rows in parallel, statistics in double, the parameter gradients as
// column sums in a fixed order; the reference for kernels/cuda/layer_norm.cu.
#include <cmath>

#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/layer_norm.h"

namespace gpudl::kernels::cpu {
namespace {
// Rows per thread at least: a row of a few hundred values is a microsecond of work.
constexpr index_t kRowGrain = 64;
}  // namespace

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                        index_t rows, index_t cols, float eps, const Exec&) {
  parallel_for(rows, kRowGrain, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      double sum = 0.0;
      for (index_t j = 0; j < cols; ++j) sum += xr[j];
      const double mu = cols > 0 ? sum / static_cast<double>(cols) : 0.0;
      double sq = 0.0;
      for (index_t j = 0; j < cols; ++j) sq += (xr[j] - mu) * (xr[j] - mu);
      const double var = cols > 0 ? sq / static_cast<double>(cols) : 0.0;
      const auto m = static_cast<float>(mu);
      const auto s = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
      mean[r] = m;
      rstd[r] = s;
      float* yr = y + r * cols;
      for (index_t j = 0; j < cols; ++j) {
        const float xhat = (xr[j] - m) * s;
        yr[j] = gamma != nullptr ? gamma[j] * xhat + beta[j] : xhat;
      }
    }
  });
}

void layer_norm_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x, const float* mean,
                         const float* rstd, const float* gamma, index_t rows, index_t cols, const Exec&) {
  parallel_for(rows, kRowGrain, [&](index_t r0, index_t r1) {
    for (index_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      const float* dyr = dy + r * cols;
      const float m = mean[r], s = rstd[r];
      double sum_g = 0.0, sum_gx = 0.0;
      for (index_t j = 0; j < cols; ++j) {
        const float g = gamma != nullptr ? gamma[j] * dyr[j] : dyr[j];
        sum_g += g;
        sum_gx += static_cast<double>(g) * ((xr[j] - m) * s);
      }
      const auto mean_g = static_cast<float>(sum_g / static_cast<double>(cols));
      const auto mean_gx = static_cast<float>(sum_gx / static_cast<double>(cols));
      float* dxr = dx + r * cols;
      for (index_t j = 0; j < cols; ++j) {
        const float g = gamma != nullptr ? gamma[j] * dyr[j] : dyr[j];
        const float xhat = (xr[j] - m) * s;
        dxr[j] = s * (g - mean_g - xhat * mean_gx);
      }
    }
  });
  if (dgamma == nullptr) return;
  // Each thread owns a range of columns and walks every row in order: no atomics, a fixed order.
  parallel_for(cols, 256, [&](index_t c0, index_t c1) {
    for (index_t j = c0; j < c1; ++j) {
      double dg = 0.0, db = 0.0;
      for (index_t r = 0; r < rows; ++r) {
        const float d = dy[r * cols + j];
        dg += static_cast<double>(d) * ((x[r * cols + j] - mean[r]) * rstd[r]);
        db += d;
      }
      dgamma[j] += static_cast<float>(dg);
      dbeta[j] += static_cast<float>(db);
    }
  });
}

}  // namespace gpudl::kernels::cpu
