// Element types, their sizes and names, and conversions shared by the CPU and CUDA backends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "gpudl/kernels/common.h"

namespace gpudl {

// f32 is complete; the others can be stored, copied, cast and filled.
enum class DType : std::uint8_t { kF32, kF16, kBF16, kI32, kI64, kU8 };

constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kU8: return 1;
  }
  return 0;
}

constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kU8: return "u8";
  }
  return "?";
}

// The 16-bit floating-point types of mixed precision, and every floating-point type.
constexpr bool is_low_precision(DType t) { return t == DType::kBF16 || t == DType::kF16; }
constexpr bool is_floating(DType t) { return t == DType::kF32 || is_low_precision(t); }

// IEEE binary16 and bfloat16 as bit patterns; the arithmetic happens in float.
struct Half {
  std::uint16_t bits;
};
struct BFloat16 {
  std::uint16_t bits;
};

template <class T>
struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::kF32; };
template <> struct DTypeOf<Half> { static constexpr DType value = DType::kF16; };
template <> struct DTypeOf<BFloat16> { static constexpr DType value = DType::kBF16; };
template <> struct DTypeOf<std::int32_t> { static constexpr DType value = DType::kI32; };
template <> struct DTypeOf<std::int64_t> { static constexpr DType value = DType::kI64; };
template <> struct DTypeOf<std::uint8_t> { static constexpr DType value = DType::kU8; };

namespace kernels {

GPUDL_HD inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
GPUDL_HD inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, with overflow to infinity, subnormals and NaN kept quiet.
GPUDL_HD inline Half float_to_half(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN
    return Half{static_cast<std::uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u))};
  }
  if (abs >= 0x477ff000u) {  // rounds to a value past the largest half, 65504
    return Half{static_cast<std::uint16_t>(sign | 0x7c00u)};
  }
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000001u) return Half{static_cast<std::uint16_t>(sign)};  // rounds to zero
    const std::uint32_t exp = abs >> 23;
    const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - exp;  // 14 + (127 - 15) - exp + 1
    std::uint32_t h = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
    return Half{static_cast<std::uint16_t>(sign | h)};
  }
  std::uint32_t h = ((abs - 0x38000000u) >> 13);  // rebias 127 -> 15
  const std::uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return Half{static_cast<std::uint16_t>(sign | h)};
}

GPUDL_HD inline float half_to_float(Half h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h.bits & 0x8000u) << 16;
  const std::uint32_t exp = (h.bits >> 10) & 0x1fu;
  std::uint32_t mant = h.bits & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    // Subnormal: value = mant * 2^-24, exact in float.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

GPUDL_HD inline BFloat16 float_to_bfloat16(float f) {
  const std::uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return BFloat16{static_cast<std::uint16_t>((x >> 16) | 0x40u)};
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return BFloat16{static_cast<std::uint16_t>((x + rounding) >> 16)};
}

GPUDL_HD inline float bfloat16_to_float(BFloat16 b) { return bits_float(static_cast<std::uint32_t>(b.bits) << 16); }

// FP32 arithmetic on stored bf16/f16 values (and on floats): load widens exactly, store<T>
// rounds to nearest even, once. Shared by the CPU and CUDA kernels with a low-precision path.
GPUDL_HD inline float load(float v) { return v; }
GPUDL_HD inline float load(BFloat16 v) { return bfloat16_to_float(v); }
GPUDL_HD inline float load(Half v) { return half_to_float(v); }
template <class T>
GPUDL_HD inline T store(float v) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    return float_to_bfloat16(v);
  } else if constexpr (std::is_same_v<T, Half>) {
    return float_to_half(v);
  } else {
    return v;
  }
}

template <class T>
GPUDL_HD inline double to_double(T v) {
  if constexpr (std::is_same_v<T, Half>) {
    return half_to_float(v);
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    return bfloat16_to_float(v);
  } else {
    return static_cast<double>(v);
  }
}

// Converts between element types. Float to integer truncates toward zero and saturates at
// the integer's range, with NaN giving 0, so both backends agree where C++ leaves it undefined.
template <class To, class From>
GPUDL_HD inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, Half>) {
    return float_to_half(static_cast<float>(to_double(v)));
  } else if constexpr (std::is_same_v<To, BFloat16>) {
    return float_to_bfloat16(static_cast<float>(to_double(v)));
  } else if constexpr (std::is_integral_v<To> && std::is_integral_v<From>) {
    return static_cast<To>(v);  // modular, as C++20 defines it
  } else if constexpr (std::is_integral_v<To>) {
    const double d = to_double(v);
    if (!(d == d)) return To{0};
    constexpr double lo = static_cast<double>(std::numeric_limits<To>::lowest());
    // 2^63 and 2^31 are exact doubles; the largest i64 is not, so compare with >=.
    constexpr double hi_excl = static_cast<double>(std::numeric_limits<To>::max()) + 1.0;
    if (d <= lo) return std::numeric_limits<To>::lowest();
    if (d >= hi_excl) return std::numeric_limits<To>::max();
    return static_cast<To>(d);
  } else {
    return static_cast<To>(to_double(v));
  }
}

}  // namespace kernels
}  // namespace gpudl
