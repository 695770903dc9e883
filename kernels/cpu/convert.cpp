// f32 <-> bf16 and f32 <-> f16 conversion loops: vectorised bf16, F16C for f16 chosen at run time.
#include "gpudl/kernels/cpu/convert.h"

#include <algorithm>
#include <bit>
#include <string>

#include "gpudl/kernels/cpu/clones.h"
#include "gpudl/kernels/error.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define GPUDL_CONVERT_F16C 1
#endif

namespace gpudl::kernels::cpu {
namespace {

// The reference's arithmetic on bits (dtype.h), without its NaN branch, so the loop vectorises:
// round to nearest even by adding 0x7fff plus the lowest kept bit; NaN keeps its high bits and
// is made quiet.
GPUDL_CPU_CLONES void f32_to_bf16_loop(std::uint16_t* __restrict out, const float* __restrict in, index_t n) {
  for (index_t i = 0; i < n; ++i) {
    const auto x = std::bit_cast<std::uint32_t>(in[i]);
    const auto rounded = static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
    const auto nan = static_cast<std::uint16_t>((x >> 16) | 0x40u);
    out[i] = (x & 0x7fffffffu) > 0x7f800000u ? nan : rounded;
  }
}

GPUDL_CPU_CLONES void bf16_to_f32_loop(float* __restrict out, const std::uint16_t* __restrict in, index_t n) {
  for (index_t i = 0; i < n; ++i) out[i] = std::bit_cast<float>(static_cast<std::uint32_t>(in[i]) << 16);
}

void f32_to_f16_portable(Half* out, const float* in, index_t n) {
  for (index_t i = 0; i < n; ++i) out[i] = float_to_half(in[i]);
}

void f16_to_f32_portable(float* out, const Half* in, index_t n) {
  for (index_t i = 0; i < n; ++i) out[i] = half_to_float(in[i]);
}

#if defined(GPUDL_CONVERT_F16C)
// F16C from CPUID leaf 1 (Clang's __builtin_cpu_supports has no "f16c"); "avx" also checks that
// the OS saves the YMM registers.
bool have_f16c() {
  static const bool yes = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  }();
  return yes;
}

// Eight at a time with vcvtps2ph (round to nearest even). Its NaN differs from the reference's
// (it keeps the payload's high bits; the reference gives sign | 0x7e00), so blocks holding a NaN
// are redone by the reference: rare, and the results match the GPU's bit for bit.
__attribute__((target("avx,f16c"))) void f32_to_f16_f16c(Half* out, const float* in, index_t n) {
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(in + i);
    if (_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)) != 0) {
      f32_to_f16_portable(out + i, in + i, 8);
      continue;
    }
    const __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  f32_to_f16_portable(out + i, in + i, n - i);
}

// vcvtph2ps makes a signalling NaN quiet where the reference keeps its bits; blocks with a NaN
// (exponent 0x1f, mantissa not 0) are redone by the reference.
__attribute__((target("avx,f16c"))) void f16_to_f32_f16c(float* out, const Half* in, index_t n) {
  const __m128i exponent = _mm_set1_epi16(0x7c00);
  const __m128i mantissa = _mm_set1_epi16(0x03ff);
  index_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    const __m128i all_ones_exp = _mm_cmpeq_epi16(_mm_and_si128(h, exponent), exponent);
    const __m128i zero_mant = _mm_cmpeq_epi16(_mm_and_si128(h, mantissa), _mm_setzero_si128());
    if (_mm_movemask_epi8(_mm_andnot_si128(zero_mant, all_ones_exp)) != 0) {
      f16_to_f32_portable(out + i, in + i, 8);
      continue;
    }
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  f16_to_f32_portable(out + i, in + i, n - i);
}
#endif

}  // namespace

void f32_to_bf16(BFloat16* out, const float* in, index_t n) {
  static_assert(sizeof(BFloat16) == sizeof(std::uint16_t));
  f32_to_bf16_loop(reinterpret_cast<std::uint16_t*>(out), in, n);
}

void bf16_to_f32(float* out, const BFloat16* in, index_t n) {
  bf16_to_f32_loop(out, reinterpret_cast<const std::uint16_t*>(in), n);
}

bool f32_to_f16_path(HalfPath path, Half* out, const float* in, index_t n) {
  switch (path) {
    case HalfPath::kF16c:
#if defined(GPUDL_CONVERT_F16C)
      if (!have_f16c()) return false;
      f32_to_f16_f16c(out, in, n);
      return true;
#else
      return false;
#endif
    case HalfPath::kPortable: f32_to_f16_portable(out, in, n); return true;
  }
  return false;
}

bool f16_to_f32_path(HalfPath path, float* out, const Half* in, index_t n) {
  switch (path) {
    case HalfPath::kF16c:
#if defined(GPUDL_CONVERT_F16C)
      if (!have_f16c()) return false;
      f16_to_f32_f16c(out, in, n);
      return true;
#else
      return false;
#endif
    case HalfPath::kPortable: f16_to_f32_portable(out, in, n); return true;
  }
  return false;
}

void f32_to_f16(Half* out, const float* in, index_t n) {
  if (!f32_to_f16_path(HalfPath::kF16c, out, in, n)) f32_to_f16_portable(out, in, n);
}

void f16_to_f32(float* out, const Half* in, index_t n) {
  if (!f16_to_f32_path(HalfPath::kF16c, out, in, n)) f16_to_f32_portable(out, in, n);
}

void widen_to_f32(float* out, const void* in, DType t, index_t offset, index_t n) {
  switch (t) {
    case DType::kBF16: bf16_to_f32(out, static_cast<const BFloat16*>(in) + offset, n); return;
    case DType::kF16: f16_to_f32(out, static_cast<const Half*>(in) + offset, n); return;
    case DType::kF32: std::copy_n(static_cast<const float*>(in) + offset, n, out); return;
    case DType::kI32:
    case DType::kI64:
    case DType::kU8: break;
  }
  throw ValueError(std::string("widen_to_f32: dtype ") + dtype_name(t) + " is not f32, bf16 or f16");
}

void narrow_from_f32(void* out, DType t, const float* in, index_t offset, index_t n) {
  switch (t) {
    case DType::kBF16: f32_to_bf16(static_cast<BFloat16*>(out) + offset, in, n); return;
    case DType::kF16: f32_to_f16(static_cast<Half*>(out) + offset, in, n); return;
    case DType::kF32: std::copy_n(in, n, static_cast<float*>(out) + offset); return;
    case DType::kI32:
    case DType::kI64:
    case DType::kU8: break;
  }
  throw ValueError(std::string("narrow_from_f32: dtype ") + dtype_name(t) + " is not f32, bf16 or f16");
}

}  // namespace gpudl::kernels::cpu
