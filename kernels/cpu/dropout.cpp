// CPU reference implementation of dropout.
#include "gpudl/kernels/dropout.h"

namespace gpudl::kernels::cpu {

void dropout_forward(float* y, float* mask, const float* x, index_t n, float p, std::uint64_t seed,
                     std::uint64_t offset, const Exec&) {
  for (index_t base = 0; base < n; base += 4) {
    const Philox4x32 r = philox_block(seed, offset, static_cast<std::uint64_t>(base / 4));
    for (index_t j = 0; j < 4 && base + j < n; ++j) {
      mask[base + j] = dropout_scale(uniform01(r.v[j]), p);
      y[base + j] = x[base + j] * mask[base + j];
    }
  }
}

}  // namespace gpudl::kernels::cpu
