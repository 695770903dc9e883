// Maps a runtime DType to its C++ element type, for the CPU and CUDA kernel implementations.
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/kernels/dtype.h"
#include "gpudl/kernels/error.h"

namespace gpudl::kernels::detail {

// Calls fn(T{}) with T the element type of `type`; throws ValueError for an unknown tag.
template <class Fn>
decltype(auto) visit_dtype(DType type, Fn&& fn) {
  switch (type) {
    case DType::kF32: return fn(float{});
    case DType::kF16: return fn(Half{});
    case DType::kBF16: return fn(BFloat16{});
    case DType::kI32: return fn(std::int32_t{});
    case DType::kI64: return fn(std::int64_t{});
    case DType::kU8: return fn(std::uint8_t{});
  }
  throw ValueError("unknown dtype tag " + std::to_string(static_cast<int>(type)));
}

// Throws ValueError naming `op` unless `type` is f32, bf16 or f16.
inline void require_floating(DType type, const char* op) {
  if (!is_floating(type)) {
    throw ValueError(std::string(op) + ": dtype " + dtype_name(type) + " is not f32, bf16 or f16");
  }
}

// Calls fn(T{}) with T the element type of a floating-point `type` (float, BFloat16 or Half),
// for kernels that compute in FP32 on any of them; throws ValueError naming `op` otherwise.
template <class Fn>
void with_float_type(DType type, const char* op, Fn&& fn) {
  require_floating(type, op);
  switch (type) {
    case DType::kBF16: fn(BFloat16{}); return;
    case DType::kF16: fn(Half{}); return;
    case DType::kF32:
    case DType::kI32:
    case DType::kI64:
    case DType::kU8: break;
  }
  fn(float{});
}

}  // namespace gpudl::kernels::detail
