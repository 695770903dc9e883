// CPU implementation of dropout: Philox words 64 elements at a time, then a vectorised apply.
#include "gpudl/kernels/dropout.h"

#include <algorithm>

#include "gpudl/kernels/cpu/convert.h"
#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/cpu/philox_x16.h"
#include "gpudl/kernels/dispatch.h"

namespace gpudl::kernels::cpu {
namespace {

// Elements [begin, end), begin a multiple of 4. The kept elements' scale is dropout_scale's
// own expression, so the mask is bit-identical to the CUDA kernel's.
// bf16/f16 x and y go through FP32 copies of each 64-element chunk (vectorised conversions).
void dropout_range(void* y, float* __restrict mask, const void* x, DType type, index_t begin, index_t end, float p,
                   std::uint64_t seed, std::uint64_t offset) {
  const float keep = 1.0f / (1.0f - p);
  alignas(64) std::uint32_t words[kPhiloxChunk];
  alignas(64) float xs[kPhiloxChunk], ys[kPhiloxChunk];
  const bool f32 = type == DType::kF32;
  for (index_t base = begin; base < end; base += kPhiloxChunk) {
    philox_words64(seed, offset, static_cast<std::uint64_t>(base / 4), words);
    const index_t count = std::min(kPhiloxChunk, end - base);
    float* __restrict m = mask + base;
    for (index_t k = 0; k < count; ++k) m[k] = uniform01(words[k]) < p ? 0.0f : keep;
    const float* xf = xs;
    float* yf = ys;
    if (f32) {
      xf = static_cast<const float*>(x) + base;
      yf = static_cast<float*>(y) + base;
    }
    if (!f32) widen_to_f32(xs, x, type, base, count);
    for (index_t k = 0; k < count; ++k) yf[k] = xf[k] * m[k];
    if (!f32) narrow_from_f32(y, type, ys, base, count);
  }
}

}  // namespace

void dropout_forward(void* y, float* mask, const void* x, DType type, index_t n, float p, std::uint64_t seed,
                     std::uint64_t offset, const Exec&) {
  detail::require_floating(type, "dropout_forward");
  // Threads take whole runs of 64-element chunks, so every chunk starts on a block boundary.
  parallel_for((n + kPhiloxChunk - 1) / kPhiloxChunk, 1 << 9, [&](index_t c0, index_t c1) {
    dropout_range(y, mask, x, type, c0 * kPhiloxChunk, std::min(n, c1 * kPhiloxChunk), p, seed, offset);
  });
}

void dropout_forward_at(void* y, float* mask, const void* x, DType type, index_t n, float p, std::uint64_t seed,
                        const std::int64_t* offset, const Exec& exec) {
  dropout_forward(y, mask, x, type, n, p, seed, static_cast<std::uint64_t>(*offset), exec);
}

void dropout_backward(void* dx, const void* dy, const float* mask, DType type, index_t n, const Exec&) {
  detail::require_floating(type, "dropout_backward");
  if (type == DType::kF32) {
    float* out = static_cast<float*>(dx);
    const float* g = static_cast<const float*>(dy);
    parallel_for(n, 1 << 15, [&](index_t i0, index_t i1) {
      for (index_t i = i0; i < i1; ++i) out[i] = g[i] * mask[i];
    });
    return;
  }
  // bf16/f16 in cache-sized FP32 chunks; dx may alias dy (each chunk is read before written).
  parallel_for(n, 1 << 15, [&](index_t i0, index_t i1) {
    constexpr index_t kChunk = 1024;
    float buffer[kChunk];
    for (index_t c0 = i0; c0 < i1; c0 += kChunk) {
      const index_t len = std::min(kChunk, i1 - c0);
      widen_to_f32(buffer, dy, type, c0, len);
      for (index_t k = 0; k < len; ++k) buffer[k] *= mask[c0 + k];
      narrow_from_f32(dx, type, buffer, c0, len);
    }
  });
}

}  // namespace gpudl::kernels::cpu
