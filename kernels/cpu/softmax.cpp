// CPU reference implementations of softmax, log-softmax and the fused cross-entropy.
#include "gpudl/kernels/softmax.h"

#include <cmath>
#include <limits>

namespace gpudl::kernels::cpu {

void softmax_forward(float* y, const float* x, index_t rows, index_t cols, bool log, const Exec&) {
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float m = -INFINITY;
    for (index_t c = 0; c < cols; ++c) m = std::fmax(m, xr[c]);
    // The sum and the dot product below run in double: a float running sum over a wide row drifts
    // by ~sqrt(cols) ulp, which made this reference less exact than the CUDA kernel it checks.
    double acc = 0.0;
    for (index_t c = 0; c < cols; ++c) acc += std::exp(xr[c] - m);
    const auto sum = static_cast<float>(acc);
    // Relative to the maximum: subtracting a large logsumexp would round away small differences.
    const float log_sum = std::log(sum);
    for (index_t c = 0; c < cols; ++c) yr[c] = log ? (xr[c] - m) - log_sum : std::exp(xr[c] - m) / sum;
  }
}

void softmax_backward(float* dx, const float* dy, const float* y, index_t rows, index_t cols, bool log,
                      const Exec&) {
  for (index_t r = 0; r < rows; ++r) {
    const float* dyr = dy + r * cols;
    const float* yr = y + r * cols;
    double acc = 0.0;
    for (index_t c = 0; c < cols; ++c) acc += log ? dyr[c] : static_cast<double>(dyr[c]) * yr[c];
    const auto dot = static_cast<float>(acc);
    for (index_t c = 0; c < cols; ++c) {
      dx[r * cols + c] = log ? dyr[c] - std::exp(yr[c]) * dot : yr[c] * (dyr[c] - dot);
    }
  }
}

void cross_entropy_forward_backward(float* loss_sum, float* correct, float* dlogits, const float* logits,
                                    const std::int64_t* labels, index_t rows, index_t cols, float smoothing,
                                    float loss_scale, float grad_scale, const Exec&) {
  const float off = smoothing / static_cast<float>(cols);
  float total = 0.0f, hits = 0.0f;
  for (index_t r = 0; r < rows; ++r) {
    const float* xr = logits + r * cols;
    const std::int64_t label = labels[r];
    const bool valid = label >= 0 && label < cols;
    float m = -INFINITY;
    index_t arg = 0;
    for (index_t c = 0; c < cols; ++c) {
      if (xr[c] > m) m = xr[c], arg = c;
    }
    // Shifted by the maximum m: loss = log Σe^(x-m) - <q, x - m>, as <q, 1> = 1.
    float sum = 0.0f, qx = 0.0f;
    for (index_t c = 0; c < cols; ++c) {
      sum += std::exp(xr[c] - m);
      qx += (off + (c == label ? 1.0f - smoothing : 0.0f)) * (xr[c] - m);
    }
    total += valid ? std::log(sum) - qx : std::numeric_limits<float>::quiet_NaN();
    hits += valid && arg == label ? 1.0f : 0.0f;
    if (dlogits != nullptr) {
      for (index_t c = 0; c < cols; ++c) {
        const float q = off + (c == label ? 1.0f - smoothing : 0.0f);
        dlogits[r * cols + c] =
            valid ? grad_scale * (std::exp(xr[c] - m) / sum - q) : std::numeric_limits<float>::quiet_NaN();
      }
    }
  }
  *loss_sum += loss_scale * total;
  if (correct != nullptr) *correct += hits;
}

}  // namespace gpudl::kernels::cpu
