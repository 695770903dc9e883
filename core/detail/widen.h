// bf16/fp16 tensors at kernels that compute in FP32 only: widened copies in, one rounding out.
#pragma once

#include <initializer_list>

#include "gpudl/core/runtime/ops.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl::detail {

// The low-precision kernels' contract is FP32 arithmetic on values stored in bf16/fp16 and one
// round-to-nearest-even per stored result. The facade keeps that contract for a kernel that has
// no low-precision path of its own by running its FP32 twin on widened copies (widening is
// exact) and rounding what it wrote back once: the same numbers on both backends, at the cost
// of a transient FP32 copy. A native kernel can replace the detour without changing a result
// beyond the summation order.
inline bool is_low(const Tensor& t) {
  return t.defined() && is_low_precision(t.dtype());
}
inline bool any_low(std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (is_low(*t)) return true;
  }
  return false;
}
// `t` to read in FP32: itself when it is not bf16/fp16, else a widened copy.
inline Tensor widen(const Tensor& t) { return is_low(t) ? t.cast(DType::kF32) : t; }
// Where an FP32 kernel writes the result meant for `t` (not read first): `t` itself when it is
// not bf16/fp16, else fresh FP32 memory of its shape.
inline Tensor f32_output(const Tensor& t) {
  return is_low(t) ? Tensor::empty(t.shape(), DType::kF32, t.device()) : t;
}
// Rounds the FP32 result `f` into `t` when f is a stand-in for it.
inline void narrow_into(const Tensor& t, const Tensor& f) {
  if (is_low(t)) ops::cast(t, f);
}
// Whether every defined tensor has the first one's type (a kernel's own bf16/f16 path applies;
// a mix of types goes through FP32 copies instead).
inline bool one_type(std::initializer_list<const Tensor*> tensors) {
  const Tensor& first = **tensors.begin();
  for (const Tensor* t : tensors) {
    if (t->defined() && first.defined() && t->dtype() != first.dtype()) return false;
  }
  return true;
}
// Whether two tensors share their first byte (an output computed in place).
inline bool same_memory(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.raw() == b.raw();
}

}  // namespace gpudl::detail
