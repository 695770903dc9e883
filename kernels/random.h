// Random fills from Philox4x32-10, declared identically for both backends.
#pragma once

#include <cstdint>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/philox.h"

namespace gpudl::kernels {

// One word onto [low, high), the formula of every uniform fill. For the largest words
// low + (high - low) u can round up to high itself (on [2, 4), say, where floats are 2^-22
// apart and 2 u falls within 2^-23 of 2); those take the float just below high, so the
// interval stays half-open.
GPUDL_HD inline float uniform_value(std::uint32_t bits, float low, float high) {
  const float v = low + (high - low) * uniform01(bits);
  return v < high ? v : nextafterf(high, low);
}

// The value of element i of a uniform fill: shared by both backends so they agree exactly.
GPUDL_HD inline float uniform_element(std::uint64_t seed, std::uint64_t offset, std::uint64_t i, float low,
                                      float high) {
  const Philox4x32 r = philox_block(seed, offset, i / 4);
  return uniform_value(r.v[i % 4], low, high);
}

// Normals for the block of four elements starting at 4 * block.
GPUDL_HD inline void normal_block(std::uint64_t seed, std::uint64_t offset, std::uint64_t block, float mean,
                                  float stddev, float out[4]) {
  const Philox4x32 r = philox_block(seed, offset, block);
  float z[4];
  box_muller(r.v[0], r.v[1], z[0], z[1]);
  box_muller(r.v[2], r.v[3], z[2], z[3]);
  for (int j = 0; j < 4; ++j) out[j] = mean + stddev * z[j];
}

namespace cpu {
#include "gpudl/kernels/random.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/random.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
