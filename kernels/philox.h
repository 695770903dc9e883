// Philox4x32-10 counter-based generator and its uniform/normal transforms, host and device.
//
// One algorithm, compiled by g++ and nvcc alike, so the CPU and CUDA backends draw the same
// numbers for the same (seed, offset, index): dropout masks, initialisation and augmentation
// can be compared bit for bit across backends. Salmon et al., "Parallel random numbers: as
// easy as 1, 2, 3" (SC'11) define the algorithm and publish its known-answer vectors.
#pragma once

#include <cmath>
#include <cstdint>

#include "gpudl/kernels/common.h"

namespace gpudl::kernels {

struct Philox4x32 {
  std::uint32_t v[4];
};

namespace philox_detail {
inline constexpr std::uint32_t kMul0 = 0xD2511F53u;
inline constexpr std::uint32_t kMul1 = 0xCD9E8D57u;
inline constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;  // golden ratio
inline constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;  // sqrt(3) - 1

GPUDL_HD inline void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi, std::uint32_t& lo) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}
}  // namespace philox_detail

// Ten rounds of Philox4x32 on `counter` under `key`.
GPUDL_HD inline Philox4x32 philox4x32_10(Philox4x32 counter, std::uint32_t key0, std::uint32_t key1) {
  using namespace philox_detail;
  std::uint32_t c0 = counter.v[0], c1 = counter.v[1], c2 = counter.v[2], c3 = counter.v[3];
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kMul0, c0, hi0, lo0);
    mulhilo(kMul1, c2, hi1, lo1);
    const std::uint32_t n0 = hi1 ^ c1 ^ key0;
    const std::uint32_t n2 = hi0 ^ c3 ^ key1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return Philox4x32{{c0, c1, c2, c3}};
}

// The four words for element block `block` of stream (`seed`, `offset`): the block index
// fills the low counter words, the offset (one per generator call) the high ones.
GPUDL_HD inline Philox4x32 philox_block(std::uint64_t seed, std::uint64_t offset, std::uint64_t block) {
  const Philox4x32 ctr{{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                        static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(offset >> 32)}};
  return philox4x32_10(ctr, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

// [0, 1) with 24 random bits: every value is exactly representable, on both backends.
GPUDL_HD inline float uniform01(std::uint32_t bits) { return static_cast<float>(bits >> 8) * 0x1p-24f; }

// (0, 1]: safe to take the logarithm of.
GPUDL_HD inline float uniform01_open_low(std::uint32_t bits) {
  return static_cast<float>((bits >> 8) + 1u) * 0x1p-24f;
}

// Box-Muller: two standard normals from two words. Computed in double so that the host's
// and the device's libm agree to well within float rounding.
GPUDL_HD inline void box_muller(std::uint32_t a, std::uint32_t b, float& z0, float& z1) {
  const double u1 = uniform01_open_low(a);
  const double u2 = uniform01(b);
  const double r = sqrt(-2.0 * log(u1));
  const double theta = 6.283185307179586476925 * u2;
  z0 = static_cast<float>(r * cos(theta));
  z1 = static_cast<float>(r * sin(theta));
}

}  // namespace gpudl::kernels
