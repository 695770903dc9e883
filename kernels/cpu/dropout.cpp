// CPU reference implementation of dropout.
#include "gpudl/kernels/dropout.h"

#include <algorithm>

#include "gpudl/kernels/cpu/parallel.h"

namespace gpudl::kernels::cpu {

void dropout_forward(float* y, float* mask, const float* x, index_t n, float p, std::uint64_t seed,
                     std::uint64_t offset, const Exec&) {
  // Blocks of 4 elements share one Philox draw; threads take whole runs of blocks.
  parallel_for((n + 3) / 4, 1 << 13, [&](index_t b0, index_t b1) {
    for (index_t base = b0 * 4; base < std::min(n, b1 * 4); base += 4) {
      const Philox4x32 r = philox_block(seed, offset, static_cast<std::uint64_t>(base / 4));
      for (index_t j = 0; j < 4 && base + j < n; ++j) {
        mask[base + j] = dropout_scale(uniform01(r.v[j]), p);
        y[base + j] = x[base + j] * mask[base + j];
      }
    }
  });
}

}  // namespace gpudl::kernels::cpu
