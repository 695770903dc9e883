// The tensor operations facade: checks shapes, dtypes and devices, then calls the CPU or
// CUDA kernel chosen from the tensors' device (at run time, so a CUDA build still runs on
// the CPU). Outputs come first and must already have the right shape; the functions that
// return a Tensor allocate it. Every function throws ShapeError naming the operation and
// both shapes on a mismatch, ValueError for an unsupported dtype, DeviceError when the
// tensors live on different devices.
#pragma once

#include <cstdint>

#include "gpudl/core/runtime/rng.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl::ops {

void fill(const Tensor& out, double value);
// counter (one i64 value) += by, enqueued on its device's compute stream. Throws ValueError for
// another dtype or size.
void count_up(const Tensor& counter, std::int64_t by = 1);
// Same shape, dtype and device.
void copy(const Tensor& out, const Tensor& in);
// Same shape and device; converts between any two dtypes.
void cast(const Tensor& out, const Tensor& in);

// Element-wise on tensors of one shape; `out` may be `a` or `b`. f32, or bf16/f16 (computed in
// FP32, rounded once); the versions returning a tensor give it a's type.
void add(const Tensor& out, const Tensor& a, const Tensor& b);
void sub(const Tensor& out, const Tensor& a, const Tensor& b);
void mul(const Tensor& out, const Tensor& a, const Tensor& b);
void div(const Tensor& out, const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
// out = alpha * in.
void scale(const Tensor& out, const Tensor& in, float alpha);
// y += alpha * x.
void axpy(const Tensor& y, float alpha, const Tensor& x);

struct MatmulOptions {
  bool transpose_a = false;
  bool transpose_b = false;
  float alpha = 1.0f;
  float beta = 0.0f;  // out = alpha * op(a) op(b) + beta * out
  bool allow_tf32 = false;  // f32 operands may be rounded to TF32 on CUDA tensor cores
};
// 2-D: op(a) (m, k) times op(b) (k, n) into out (m, n). 3-D: the same for each of `batch`
// matrices, (batch, m, k) x (batch, k, n) -> (batch, m, n). a and b are of one type (f32, bf16
// or f16) and out is f32 or that type; sums are FP32 and a bf16/f16 out is rounded once. The
// version returning a tensor gives it a's type.
void matmul(const Tensor& out, const Tensor& a, const Tensor& b, const MatmulOptions& options = {});
Tensor matmul(const Tensor& a, const Tensor& b, const MatmulOptions& options = {});

// out (rows, n) = a (rows, k) · bᵀ + bias (n), all f32 and 2-D (b is (n, k)): a Linear layer's
// forward in one call. On CUDA one cuBLASLt matmul adds the bias in its epilogue; on the CPU it
// is matmul then nn::add_bias, to the bit. `allow_tf32` as in MatmulOptions. Throws ValueError,
// DeviceError and ShapeError as matmul does, naming the bias when it is not (n).
void linear(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias, bool allow_tf32 = false);

// Whether every element is finite (no NaN or ±Inf); integer tensors always are. Reads the
// answer back to the host (a device sync).
bool all_finite(const Tensor& t);

// Reductions of an f32 tensor along `axis` (negative counts from the end); the axis is
// removed from the result's shape. argmax returns i64 indices.
Tensor sum(const Tensor& in, int axis);
Tensor mean(const Tensor& in, int axis);
Tensor max(const Tensor& in, int axis);
Tensor argmax(const Tensor& in, int axis);

// Fill an f32 tensor from `gen` (same values on the CPU and the GPU for the same state).
void uniform_(const Tensor& out, float low, float high, Generator& gen);
void normal_(const Tensor& out, float mean, float stddev, Generator& gen);

}  // namespace gpudl::ops
