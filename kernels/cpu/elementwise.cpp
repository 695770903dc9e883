// CPU reference implementations of the element-wise kernels.
#include "gpudl/kernels/elementwise.h"

#include <algorithm>
#include <cstring>

#include "gpudl/kernels/cpu/convert.h"
#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/dispatch.h"

namespace gpudl::kernels::cpu {
namespace {

template <class Op>
void binary(void* out, const void* a, const void* b, DType type, index_t n, Op op) {
  if (type == DType::kF32) {
    float* o = static_cast<float*>(out);
    const float *x = static_cast<const float*>(a), *y = static_cast<const float*>(b);
    for (index_t i = 0; i < n; ++i) o[i] = op(x[i], y[i]);
    return;
  }
  detail::require_floating(type, "element-wise op");
  // bf16/f16 in cache-sized FP32 chunks; each chunk is read before it is written, so out may
  // alias a or b.
  constexpr index_t kChunk = 1024;
  float xa[kChunk], xb[kChunk];
  for (index_t c0 = 0; c0 < n; c0 += kChunk) {
    const index_t len = std::min(kChunk, n - c0);
    widen_to_f32(xa, a, type, c0, len);
    widen_to_f32(xb, b, type, c0, len);
    for (index_t i = 0; i < len; ++i) xa[i] = op(xa[i], xb[i]);
    narrow_from_f32(out, type, xa, c0, len);
  }
}

}  // namespace

void fill(void* out, DType type, double value, index_t n, const Exec&) {
  detail::visit_dtype(type, [&](auto tag) {
    using T = decltype(tag);
    const T v = convert<T>(value);
    T* p = static_cast<T*>(out);
    for (index_t i = 0; i < n; ++i) p[i] = v;
  });
}

void count_up(std::int64_t* counter, std::int64_t by, const Exec&) { *counter += by; }

void copy(void* out, const void* in, std::size_t bytes, const Exec&) {
  if (bytes != 0) std::memcpy(out, in, bytes);
}

namespace {
// Elements per thread at least: a conversion streams memory, a few microseconds of it.
constexpr index_t kCastGrain = 1 << 16;

// The conversions of mixed precision (f32 to and from bf16 and f16) through their vectorised
// loops, split over threads; false for any other pair.
bool cast_mixed(void* out, DType out_type, const void* in, DType in_type, index_t n) {
  auto split = [n](auto convert) { parallel_for(n, kCastGrain, convert); };
  if (in_type == DType::kF32 && out_type == DType::kBF16) {
    split([&](index_t a, index_t b) {
      f32_to_bf16(static_cast<BFloat16*>(out) + a, static_cast<const float*>(in) + a, b - a);
    });
  } else if (in_type == DType::kBF16 && out_type == DType::kF32) {
    split([&](index_t a, index_t b) {
      bf16_to_f32(static_cast<float*>(out) + a, static_cast<const BFloat16*>(in) + a, b - a);
    });
  } else if (in_type == DType::kF32 && out_type == DType::kF16) {
    split([&](index_t a, index_t b) {
      f32_to_f16(static_cast<Half*>(out) + a, static_cast<const float*>(in) + a, b - a);
    });
  } else if (in_type == DType::kF16 && out_type == DType::kF32) {
    split([&](index_t a, index_t b) {
      f16_to_f32(static_cast<float*>(out) + a, static_cast<const Half*>(in) + a, b - a);
    });
  } else {
    return false;
  }
  return true;
}
}  // namespace

void cast(void* out, DType out_type, const void* in, DType in_type, index_t n, const Exec&) {
  if (cast_mixed(out, out_type, in, in_type, n)) return;
  detail::visit_dtype(out_type, [&](auto out_tag) {
    detail::visit_dtype(in_type, [&](auto in_tag) {
      using To = decltype(out_tag);
      using From = decltype(in_tag);
      To* o = static_cast<To*>(out);
      const From* s = static_cast<const From*>(in);
      for (index_t i = 0; i < n; ++i) o[i] = convert<To>(s[i]);
    });
  });
}

void add(void* out, const void* a, const void* b, DType type, index_t n, const Exec&) {
  binary(out, a, b, type, n, AddOp{});
}
void sub(void* out, const void* a, const void* b, DType type, index_t n, const Exec&) {
  binary(out, a, b, type, n, SubOp{});
}
void mul(void* out, const void* a, const void* b, DType type, index_t n, const Exec&) {
  binary(out, a, b, type, n, MulOp{});
}
void div(void* out, const void* a, const void* b, DType type, index_t n, const Exec&) {
  binary(out, a, b, type, n, DivOp{});
}

void scale(float* out, const float* in, float alpha, index_t n, const Exec&) {
  for (index_t i = 0; i < n; ++i) out[i] = alpha * in[i];
}

void axpy(float* y, float alpha, const float* x, index_t n, const Exec&) {
  for (index_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace gpudl::kernels::cpu

namespace gpudl::kernels::cpu {

void add_row_vector(void* y, DType type, const float* v, index_t rows, index_t cols, const Exec&) {
  if (type == DType::kF32) {
    float* yf = static_cast<float*>(y);
    for (index_t r = 0; r < rows; ++r) {
      for (index_t c = 0; c < cols; ++c) yf[r * cols + c] += v[c];
    }
    return;
  }
  detail::require_floating(type, "add_row_vector");
  // bf16/f16 rows in cache-sized FP32 chunks (vectorised conversions both ways).
  constexpr index_t kChunk = 1024;
  float buffer[kChunk];
  for (index_t r = 0; r < rows; ++r) {
    for (index_t c0 = 0; c0 < cols; c0 += kChunk) {
      const index_t len = std::min(kChunk, cols - c0), at = r * cols + c0;
      widen_to_f32(buffer, y, type, at, len);
      for (index_t c = 0; c < len; ++c) buffer[c] += v[c0 + c];
      narrow_from_f32(y, type, buffer, at, len);
    }
  }
}

}  // namespace gpudl::kernels::cpu

namespace gpudl::kernels::cpu {

void copy_2d(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch, std::size_t row_bytes,
             std::size_t rows, const Exec&) {
  for (std::size_t r = 0; r < rows; ++r) {
    std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch, row_bytes);
  }
}

}  // namespace gpudl::kernels::cpu
