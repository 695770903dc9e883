// The contract checks the nn facade makes before it runs a kernel (internal to core/nn/).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "gpudl/core/runtime/tensor.h"

namespace gpudl::nn::checks {

// Every tensor defined, of dtype `type`, on the device of the first. Returns that device.
inline Device check(const char* op, DType type, std::initializer_list<const Tensor*> tensors) {
  const Tensor& first = **tensors.begin();
  for (const Tensor* t : tensors) {
    if (!t->defined()) throw ValueError(std::string(op) + ": an argument is an undefined tensor");
    if (t->dtype() != type) {
      throw ValueError(std::string(op) + ": a tensor of dtype " + dtype_name(t->dtype()) + " where " +
                       dtype_name(type) + " is needed");
    }
    if (t->device() != first.device()) {
      throw DeviceError(std::string(op) + ": tensors on " + first.device().str() + " and " + t->device().str() +
                        "; move one with to()");
    }
  }
  return first.device();
}

inline Device check_f32(const char* op, std::initializer_list<const Tensor*> tensors) {
  return check(op, DType::kF32, tensors);
}

// All of the first tensor's type, which is f32, bf16 or f16 (a kernel with a low-precision path).
inline Device check_float(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor& first = **tensors.begin();
  if (first.defined() && !is_floating(first.dtype())) {
    throw ValueError(std::string(op) + ": a tensor of dtype " + dtype_name(first.dtype()) +
                     " where f32, bf16 or f16 is needed");
  }
  return check(op, first.defined() ? first.dtype() : DType::kF32, tensors);
}

inline void same_shape(const char* op, const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) {
    throw ShapeError(std::string(op) + ": shapes " + a.shape().str() + " and " + b.shape().str() + " differ");
  }
}

inline void numel_is(const char* op, const Tensor& t, std::int64_t n, const char* what) {
  if (t.numel() != n) {
    throw ShapeError(std::string(op) + ": " + what + " has shape " + t.shape().str() + ", expected " +
                     std::to_string(n) + " elements");
  }
}

inline void same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (a.device() != b.device()) {
    throw DeviceError(std::string(op) + ": tensors on " + a.device().str() + " and " + b.device().str() +
                      "; move one with to()");
  }
}

// Last-axis width and the rows before it.
struct Rows {
  std::int64_t rows, cols;
};
inline Rows rows_of(const char* op, const Tensor& t) {
  if (t.ndim() == 0) throw ShapeError(std::string(op) + ": expected at least one axis, got a scalar");
  const std::int64_t cols = t.dim(t.ndim() - 1);
  return {cols == 0 ? 0 : t.numel() / cols, cols};
}

inline float* data_or_null(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// Puts `who` in front of what fn throws (the kernels name the shapes, the layer names itself).
template <class Fn>
void named(const std::string& who, Fn fn) {
  try {
    fn();
  } catch (const OutOfMemoryError& e) {
    throw OutOfMemoryError(who + ": " + e.what());
  } catch (const CudaError& e) {
    throw CudaError(who + ": " + e.what());
  } catch (const ShapeError& e) {
    throw ShapeError(who + ": " + e.what());
  } catch (const ValueError& e) {
    throw ValueError(who + ": " + e.what());
  }
}

}  // namespace gpudl::nn::checks
