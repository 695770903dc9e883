// CPU implementation of dropout: Philox words 64 elements at a time, then a vectorised apply.
#include "gpudl/kernels/dropout.h"

#include <algorithm>

#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/cpu/philox_x16.h"
#include "gpudl/kernels/dispatch.h"

namespace gpudl::kernels::cpu {
namespace {

// Elements [begin, end), begin a multiple of 4. The kept elements' scale is dropout_scale's
// own expression, so the mask is bit-identical to the CUDA kernel's.
template <class T>
void dropout_range(T* y, float* __restrict mask, const T* x, index_t begin, index_t end, float p, std::uint64_t seed,
                   std::uint64_t offset) {
  const float keep = 1.0f / (1.0f - p);
  alignas(64) std::uint32_t words[kPhiloxChunk];
  for (index_t base = begin; base < end; base += kPhiloxChunk) {
    philox_words64(seed, offset, static_cast<std::uint64_t>(base / 4), words);
    const index_t count = std::min(kPhiloxChunk, end - base);
    float* __restrict m = mask + base;
    for (index_t k = 0; k < count; ++k) m[k] = uniform01(words[k]) < p ? 0.0f : keep;
    for (index_t k = 0; k < count; ++k) y[base + k] = store<T>(load(x[base + k]) * m[k]);
  }
}

}  // namespace

void dropout_forward(void* y, float* mask, const void* x, DType type, index_t n, float p, std::uint64_t seed,
                     std::uint64_t offset, const Exec&) {
  detail::with_float_type(type, "dropout_forward", [&](auto tag) {
    using T = decltype(tag);
    // Threads take whole runs of 64-element chunks, so every chunk starts on a block boundary.
    parallel_for((n + kPhiloxChunk - 1) / kPhiloxChunk, 1 << 9, [&](index_t c0, index_t c1) {
      dropout_range(static_cast<T*>(y), mask, static_cast<const T*>(x), c0 * kPhiloxChunk,
                    std::min(n, c1 * kPhiloxChunk), p, seed, offset);
    });
  });
}

void dropout_backward(void* dx, const void* dy, const float* mask, DType type, index_t n, const Exec&) {
  detail::with_float_type(type, "dropout_backward", [&](auto tag) {
    using T = decltype(tag);
    T* out = static_cast<T*>(dx);
    const T* g = static_cast<const T*>(dy);
    parallel_for(n, 1 << 15, [&](index_t i0, index_t i1) {
      for (index_t i = i0; i < i1; ++i) out[i] = store<T>(load(g[i]) * mask[i]);
    });
  });
}

}  // namespace gpudl::kernels::cpu
