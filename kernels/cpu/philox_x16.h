// Internal to kernels/cpu: Philox4x32-10 words for 64 consecutive elements at a time.
#pragma once

#include <cstdint>

#include "gpudl/kernels/common.h"

namespace gpudl::kernels::cpu {

inline constexpr index_t kPhiloxChunk = 64;  // elements (16 blocks of four words)

// words[k] = philox_block(seed, offset, first_block + k / 4).v[k % 4] for k < 64: the words of
// 64 consecutive elements in the layout every fill and dropout mask uses. One block's ten
// rounds are a chain of dependent multiplies, so one block at a time leaves the multipliers
// waiting; with AVX-512 (or AVX2, eight at a time) the sixteen blocks run side by side in
// vector registers. Per word on the 2-core development machine: AVX-512 0.65 ns, AVX2 0.87 ns,
// one block at a time 1.8 ns (dropout's old per-element loop took 7 ns per element).
void philox_words64(std::uint64_t seed, std::uint64_t offset, std::uint64_t first_block, std::uint32_t* words);

// The ways philox_words64 can make the words: it takes the first of these the CPU has.
enum class PhiloxPath { kAvx512, kAvx2, kPortable };

// The words by one path, for tests; false (nothing written) where this CPU or build lacks it.
bool philox_words64_path(PhiloxPath path, std::uint64_t seed, std::uint64_t offset, std::uint64_t first_block,
                         std::uint32_t* words);

}  // namespace gpudl::kernels::cpu
