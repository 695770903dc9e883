// CPU implementations of the Philox random fills (same numbers as the CUDA backend).
#include "gpudl/kernels/random.h"

#include <algorithm>

#include "gpudl/kernels/cpu/philox_x16.h"

namespace gpudl::kernels::cpu {

void uniform_fill(float* out, index_t n, float low, float high, std::uint64_t seed, std::uint64_t offset,
                  const Exec&) {
  // One Philox block serves four elements; uniform_element is the per-element specification.
  alignas(64) std::uint32_t words[kPhiloxChunk];
  for (index_t base = 0; base < n; base += kPhiloxChunk) {
    philox_words64(seed, offset, static_cast<std::uint64_t>(base / 4), words);
    const index_t count = std::min(kPhiloxChunk, n - base);
    for (index_t k = 0; k < count; ++k) out[base + k] = uniform_value(words[k], low, high);
  }
}

void normal_fill(float* out, index_t n, float mean, float stddev, std::uint64_t seed, std::uint64_t offset,
                 const Exec&) {
  for (index_t base = 0; base < n; base += 4) {
    float z[4];
    normal_block(seed, offset, static_cast<std::uint64_t>(base / 4), mean, stddev, z);
    for (index_t j = 0; j < 4 && base + j < n; ++j) out[base + j] = z[j];
  }
}

}  // namespace gpudl::kernels::cpu
