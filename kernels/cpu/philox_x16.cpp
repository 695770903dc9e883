// Philox words for 64 elements at a time: AVX-512 and AVX2 paths chosen at run time, and a portable one.
#include "gpudl/kernels/cpu/philox_x16.h"

// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_epi32 reads an uninitialised
// value on purpose; GCC bug 105593); the warning fires where the intrinsics inline, here.
#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#define GPUDL_PHILOX_SIMD 1
#endif

#include "gpudl/kernels/philox.h"

namespace gpudl::kernels::cpu {
namespace {

using namespace philox_detail;

#if defined(GPUDL_PHILOX_SIMD)
// hi:lo = a * m for sixteen 32-bit lanes; m holds the multiplier in every 64-bit lane.
// vpmuludq multiplies the even 32-bit lanes only, so the odd ones take a second product.
__attribute__((target("avx512f"))) inline void mulhilo16(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

__attribute__((target("avx512f"))) void words64_avx512(std::uint64_t seed, std::uint64_t offset,
                                                        std::uint64_t first_block, std::uint32_t* words) {
  // Lane l holds block first_block + l: counter words (low index, high index, offset low,
  // offset high); the high index word carries where the low one wraps inside the sixteen.
  const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i first_lo = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first_block)));
  const __m512i first_hi = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first_block >> 32)));
  __m512i c0 = _mm512_add_epi32(first_lo, lanes);
  __m512i c1 = _mm512_mask_add_epi32(first_hi, _mm512_cmplt_epu32_mask(c0, first_lo), first_hi, _mm512_set1_epi32(1));
  __m512i c2 = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(offset)));
  __m512i c3 = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(offset >> 32)));
  const __m512i mul0 = _mm512_set1_epi64(kMul0), mul1 = _mm512_set1_epi64(kMul1);
  std::uint32_t key0 = static_cast<std::uint32_t>(seed), key1 = static_cast<std::uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    __m512i hi0, lo0, hi1, lo1;
    mulhilo16(c0, mul0, hi0, lo0);
    mulhilo16(c2, mul1, hi1, lo1);
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int>(key0)));
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(key1)));
    c1 = lo1;
    c3 = lo0;
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  // Lanes x words -> element order (word w of lane l is element 4 l + w): interleave within
  // 128-bit quarters, then a 4x4 transpose of the quarters.
  const __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
  const __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
  const __m512i r0 = _mm512_unpacklo_epi64(t0, t2), r1 = _mm512_unpackhi_epi64(t0, t2);
  const __m512i r2 = _mm512_unpacklo_epi64(t1, t3), r3 = _mm512_unpackhi_epi64(t1, t3);
  const __m512i s0 = _mm512_shuffle_i32x4(r0, r1, 0x44), s1 = _mm512_shuffle_i32x4(r2, r3, 0x44);
  const __m512i s2 = _mm512_shuffle_i32x4(r0, r1, 0xEE), s3 = _mm512_shuffle_i32x4(r2, r3, 0xEE);
  _mm512_storeu_si512(words, _mm512_shuffle_i32x4(s0, s1, 0x88));
  _mm512_storeu_si512(words + 16, _mm512_shuffle_i32x4(s0, s1, 0xDD));
  _mm512_storeu_si512(words + 32, _mm512_shuffle_i32x4(s2, s3, 0x88));
  _mm512_storeu_si512(words + 48, _mm512_shuffle_i32x4(s2, s3, 0xDD));
}

// The same with AVX2: eight blocks per pass, two passes. AVX2 has no unsigned compare, so the
// carry test flips the sign bits first; vpblendd stands in for the mask blend.
__attribute__((target("avx2"))) inline void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

__attribute__((target("avx2"))) void words32_avx2(std::uint64_t seed, std::uint64_t offset,
                                                   std::uint64_t first_block, std::uint32_t* words) {
  const __m256i lanes = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i first_lo = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first_block)));
  const __m256i first_hi = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first_block >> 32)));
  __m256i c0 = _mm256_add_epi32(first_lo, lanes);
  // -1 where c0 < first_lo as unsigned numbers, i.e. where the low word wrapped.
  const __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(first_lo, sign), _mm256_xor_si256(c0, sign));
  __m256i c1 = _mm256_sub_epi32(first_hi, wrapped);
  __m256i c2 = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(offset)));
  __m256i c3 = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(offset >> 32)));
  const __m256i mul0 = _mm256_set1_epi64x(kMul0), mul1 = _mm256_set1_epi64x(kMul1);
  std::uint32_t key0 = static_cast<std::uint32_t>(seed), key1 = static_cast<std::uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    __m256i hi0, lo0, hi1, lo1;
    mulhilo8(c0, mul0, hi0, lo0);
    mulhilo8(c2, mul1, hi1, lo1);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(key0)));
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(key1)));
    c1 = lo1;
    c3 = lo0;
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  // r_j holds block j in its low half and block j + 4 in its high half.
  const __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
  const __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
  const __m256i r0 = _mm256_unpacklo_epi64(t0, t2), r1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i r2 = _mm256_unpacklo_epi64(t1, t3), r3 = _mm256_unpackhi_epi64(t1, t3);
  auto* out = reinterpret_cast<__m256i*>(words);
  _mm256_storeu_si256(out, _mm256_permute2x128_si256(r0, r1, 0x20));
  _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(r2, r3, 0x20));
  _mm256_storeu_si256(out + 2, _mm256_permute2x128_si256(r0, r1, 0x31));
  _mm256_storeu_si256(out + 3, _mm256_permute2x128_si256(r2, r3, 0x31));
}

bool have_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#endif

void words64_portable(std::uint64_t seed, std::uint64_t offset, std::uint64_t first_block, std::uint32_t* words) {
  for (std::uint64_t b = 0; b < kPhiloxChunk / 4; ++b) {
    const Philox4x32 r = philox_block(seed, offset, first_block + b);
    for (int w = 0; w < 4; ++w) words[4 * b + w] = r.v[w];
  }
}

}  // namespace

bool philox_words64_path(PhiloxPath path, std::uint64_t seed, std::uint64_t offset, std::uint64_t first_block,
                        std::uint32_t* words) {
  switch (path) {
    case PhiloxPath::kAvx512:
#if defined(GPUDL_PHILOX_SIMD)
      if (!have_avx512()) return false;
      words64_avx512(seed, offset, first_block, words);
      return true;
#else
      return false;
#endif
    case PhiloxPath::kAvx2:
#if defined(GPUDL_PHILOX_SIMD)
      if (!have_avx2()) return false;
      words32_avx2(seed, offset, first_block, words);
      words32_avx2(seed, offset, first_block + 8, words + 32);
      return true;
#else
      return false;
#endif
    case PhiloxPath::kPortable:
      words64_portable(seed, offset, first_block, words);
      return true;
  }
  return false;
}

void philox_words64(std::uint64_t seed, std::uint64_t offset, std::uint64_t first_block, std::uint32_t* words) {
  static const PhiloxPath best = [] {
#if defined(GPUDL_PHILOX_SIMD)
    if (have_avx512()) return PhiloxPath::kAvx512;
    if (have_avx2()) return PhiloxPath::kAvx2;
#endif
    return PhiloxPath::kPortable;
  }();
  philox_words64_path(best, seed, offset, first_block, words);
}

}  // namespace gpudl::kernels::cpu

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
