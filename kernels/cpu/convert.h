// Internal to kernels/cpu: f32 <-> bf16 and f32 <-> f16 conversion loops, the casts of mixed
// precision, bit for bit the scalar reference in kernels/dtype.h.
#pragma once

#include <cstdint>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/dtype.h"

namespace gpudl::kernels::cpu {

// Each converts n elements in one thread (cast() splits a large tensor over threads). bf16 is
// a plain loop the compiler vectorises (built for AVX2 and AVX-512 too); f16 goes through the
// F16C instructions where the CPU has them (round to nearest even, as the reference), with NaN
// lanes redone by the reference so that NaN payloads agree with it and with the GPU as well.
void f32_to_bf16(BFloat16* out, const float* in, index_t n);
void bf16_to_f32(float* out, const BFloat16* in, index_t n);
void f32_to_f16(Half* out, const float* in, index_t n);
void f16_to_f32(float* out, const Half* in, index_t n);

// Elements [offset, offset + n) of `in` (of type t: f32, bf16 or f16) widened into out, and
// the reverse (rounded to nearest even): the vectorised loops above chosen by type, for CPU
// kernels that work on bf16/f16 tensors in cache-sized FP32 chunks.
void widen_to_f32(float* out, const void* in, DType t, index_t offset, index_t n);
void narrow_from_f32(void* out, DType t, const float* in, index_t offset, index_t n);

// The ways to convert f16: F16C, else the scalar reference. For tests: false (nothing written)
// where this CPU or build lacks the path.
enum class HalfPath { kF16c, kPortable };
bool f32_to_f16_path(HalfPath path, Half* out, const float* in, index_t n);
bool f16_to_f32_path(HalfPath path, float* out, const Half* in, index_t n);

}  // namespace gpudl::kernels::cpu
