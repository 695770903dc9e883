// CPU implementations of the activation kernels: one loop per kind, so each vectorises.
#include "gpudl/kernels/activation.h"

#include <algorithm>
#include <string>
#include <utility>

#include "gpudl/kernels/cpu/convert.h"
#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/dispatch.h"

namespace gpudl::kernels::cpu {
namespace {

// The kind is a template argument rather than a per-element switch: the switch blocks
// vectorisation and made ReLU alone a tenth of a CNN training step.
template <Activation kKind>
void forward_loop(float* __restrict y, const float* __restrict x, index_t n, float alpha) {
  for (index_t i = 0; i < n; ++i) y[i] = activate(kKind, x[i], alpha);
}

template <Activation kKind>
void backward_loop(float* __restrict dx, const float* __restrict dy, const float* __restrict x,
                   const float* __restrict y, index_t n, float alpha) {
  for (index_t i = 0; i < n; ++i) dx[i] = activate_grad(kKind, dy[i], x[i], y[i], alpha);
}

constexpr index_t kGrain = 1 << 15;  // elements per thread at least: ~10 µs of ReLU

void forward_range(float* y, const float* x, index_t n, Activation kind, float alpha) {
  if (y == x) {  // in place: the restrict loops must not see aliased pointers
    for (index_t i = 0; i < n; ++i) y[i] = activate(kind, y[i], alpha);
    return;
  }
  // One instantiation per kind, found from kActivationCount: a new kind needs no edit here.
  [&]<int... kKinds>(std::integer_sequence<int, kKinds...>) {
    (void)((kind == static_cast<Activation>(kKinds) &&
            (forward_loop<static_cast<Activation>(kKinds)>(y, x, n, alpha), true)) ||
           ...);
  }(std::make_integer_sequence<int, kActivationCount>{});
}

void backward_range(float* dx, const float* dy, const float* x, const float* y, index_t n, Activation kind,
                    float alpha) {
  if (dx == dy || dx == x || dx == y) {
    for (index_t i = 0; i < n; ++i) dx[i] = activate_grad(kind, dy[i], x[i], y[i], alpha);
    return;
  }
  [&]<int... kKinds>(std::integer_sequence<int, kKinds...>) {
    (void)((kind == static_cast<Activation>(kKinds) &&
            (backward_loop<static_cast<Activation>(kKinds)>(dx, dy, x, y, n, alpha), true)) ||
           ...);
  }(std::make_integer_sequence<int, kActivationCount>{});
}

// bf16/f16: chunks small enough for the L1 cache are widened into FP32 buffers on the stack,
// computed by the FP32 loops and rounded back, so no FP32 copy of the tensor is ever made.
constexpr index_t kChunk = 1024;

}  // namespace

void activation_forward(void* y, const void* x, DType type, index_t n, Activation kind, float alpha, const Exec&) {
  detail::require_floating(type, "activation");
  if (type == DType::kF32) {
    float* yf = static_cast<float*>(y);
    const float* xf = static_cast<const float*>(x);
    parallel_for(n, kGrain, [&](index_t i0, index_t i1) { forward_range(yf + i0, xf + i0, i1 - i0, kind, alpha); });
    return;
  }
  parallel_for(n, kGrain, [&](index_t i0, index_t i1) {
    // Two buffers, not one in place: forward_range's vectorised loops need distinct pointers.
    float in[kChunk], out[kChunk];
    for (index_t c0 = i0; c0 < i1; c0 += kChunk) {
      const index_t len = std::min(kChunk, i1 - c0);
      widen_to_f32(in, x, type, c0, len);
      forward_range(out, in, len, kind, alpha);
      narrow_from_f32(y, type, out, c0, len);
    }
  });
}

void activation_backward(void* dx, const void* dy, const void* x, const void* y, DType type, index_t n,
                         Activation kind, float alpha, const Exec&) {
  detail::require_floating(type, "activation");
  if (type == DType::kF32) {
    float* dxf = static_cast<float*>(dx);
    const float *dyf = static_cast<const float*>(dy), *xf = static_cast<const float*>(x),
                *yf = static_cast<const float*>(y);
    parallel_for(n, kGrain, [&](index_t i0, index_t i1) {
      backward_range(dxf + i0, dyf + i0, xf + i0, yf + i0, i1 - i0, kind, alpha);
    });
    return;
  }
  parallel_for(n, kGrain, [&](index_t i0, index_t i1) {
    float g[kChunk], in[kChunk], out[kChunk], result[kChunk];
    for (index_t c0 = i0; c0 < i1; c0 += kChunk) {
      const index_t len = std::min(kChunk, i1 - c0);
      widen_to_f32(g, dy, type, c0, len);
      widen_to_f32(in, x, type, c0, len);
      widen_to_f32(out, y, type, c0, len);
      backward_range(result, g, in, out, len, kind, alpha);
      narrow_from_f32(dx, type, result, c0, len);
    }
  });
}

}  // namespace gpudl::kernels::cpu
