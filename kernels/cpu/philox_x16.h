// Internal to kernels/cpu: Philox4x32-10 words for 64 consecutive elements at a time.
#pragma once

#include <cstdint>

#include "gpudl/kernels/common.h"

namespace gpudl::kernels::cpu {

inline constexpr index_t kPhiloxChunk = 64;  // elements (16 blocks of four words)

// words[k] = philox_block(seed, offset, first_block + k / 4).v[k % 4] for k < 64: the words of
// 64 consecutive elements in the layout every fill and dropout mask uses. One block's ten
// rounds are a chain of dependent multiplies, so one block at a time leaves the multipliers
// waiting; with AVX-512 the sixteen blocks run side by side in vector registers (about 3x the
// rate of the one-at-a-time loop; dropout went from 7 to 0.9 ns per element).
void philox_words64(std::uint64_t seed, std::uint64_t offset, std::uint64_t first_block, std::uint32_t* words);

// The one-block-at-a-time path that philox_words64 takes without AVX-512 or off x86-64
// (tests run both).
void philox_words64_portable(std::uint64_t seed, std::uint64_t offset, std::uint64_t first_block,
                             std::uint32_t* words);

}  // namespace gpudl::kernels::cpu
