// Pooling over NCHW images (max, average, global average; f32, bf16 or f16 read in FP32),
// declared identically for both backends; the per-window math is written once here and shared,
// so the twins agree exactly.
#pragma once

#include <cstdint>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/dtype.h"

namespace gpudl::kernels {

// A 2-D pooling window over an (n, c, h, w) input with zero padding. Output sizes use floor
// mode (PyTorch's default): a window that would run past the padded edge is dropped.
// Kernels do not check the geometry; callers make sure valid() holds first.
struct PoolGeometry {
  index_t n = 0, c = 0, h = 0, w = 0;
  index_t kernel_h = 1, kernel_w = 1;
  index_t stride_h = 1, stride_w = 1;
  index_t pad_h = 0, pad_w = 0;

  // Meaningful only when valid().
  GPUDL_HD index_t out_h() const { return (h + 2 * pad_h - kernel_h) / stride_h + 1; }
  GPUDL_HD index_t out_w() const { return (w + 2 * pad_w - kernel_w) / stride_w + 1; }

  // Non-empty planes and padding of at most half the kernel (as PyTorch requires) keep at least
  // one real element in every window, so a max always has a winner and no window is all padding.
  GPUDL_HD bool valid() const {
    return n >= 0 && c >= 0 && h >= 1 && w >= 1 && kernel_h >= 1 && kernel_w >= 1 && stride_h >= 1 && stride_w >= 1 && pad_h >= 0 &&
           pad_w >= 0 && pad_h <= kernel_h / 2 && pad_w <= kernel_w / 2 && h + 2 * pad_h >= kernel_h &&
           w + 2 * pad_w >= kernel_w;
  }
};

namespace pool_detail {

// A half-open range [begin, end) of positions along one axis.
struct Span {
  index_t begin, end;
};

// The input positions window `o` covers along an axis of `size`, with the padding cut away.
GPUDL_HD inline Span window_span(index_t o, index_t size, index_t kernel, index_t stride, index_t pad) {
  const index_t start = o * stride - pad;
  const index_t stop = start + kernel;
  return {start < 0 ? 0 : start, stop < size ? stop : size};
}

// The windows (among `outputs`) that cover input position i along an axis: those o with
// o * stride <= i + pad < o * stride + kernel. May be empty when the stride skips i.
GPUDL_HD inline Span covering_windows(index_t i, index_t outputs, index_t kernel, index_t stride, index_t pad) {
  const index_t lowest_start = i + pad - kernel + 1;
  const index_t begin = lowest_start <= 0 ? 0 : (lowest_start + stride - 1) / stride;
  const index_t last = (i + pad) / stride;
  return {begin, last + 1 < outputs ? last + 1 : outputs};
}

}  // namespace pool_detail

// Maximum of window (oh, ow) over one (h, w) plane: stores it in *value and returns its index
// in the plane. Padding never wins; the first NaN wins, so NaN propagates; among equal values
// the first in row-major window order wins. All three keep the backward pass unambiguous.
template <class T>
GPUDL_HD inline std::int32_t max_pool_window(float* value, const T* plane, const PoolGeometry& g, index_t oh,
                                             index_t ow) {
  const pool_detail::Span rows = pool_detail::window_span(oh, g.h, g.kernel_h, g.stride_h, g.pad_h);
  const pool_detail::Span cols = pool_detail::window_span(ow, g.w, g.kernel_w, g.stride_w, g.pad_w);
  index_t best_at = rows.begin * g.w + cols.begin;
  float best = load(plane[best_at]);
  for (index_t r = rows.begin; r < rows.end; ++r) {
    for (index_t col = cols.begin; col < cols.end; ++col) {
      const index_t at = r * g.w + col;
      const float v = load(plane[at]);
      if (v > best || (v != v && best == best)) {
        best = v;
        best_at = at;
      }
    }
  }
  *value = best;
  return static_cast<std::int32_t>(best_at);
}

// dL/dx at input (ih, iw) of one plane: the sum of dy over the windows whose winner it was,
// in row-major window order. Gathering (rather than scattering from the windows) gives each
// element one writer, so the CUDA twin needs no atomics and is deterministic.
template <class T>
GPUDL_HD inline float max_pool_input_grad(const T* dy_plane, const std::int32_t* argmax_plane,
                                          const PoolGeometry& g, index_t ih, index_t iw) {
  const index_t out_w = g.out_w();
  const pool_detail::Span rows = pool_detail::covering_windows(ih, g.out_h(), g.kernel_h, g.stride_h, g.pad_h);
  const pool_detail::Span cols = pool_detail::covering_windows(iw, out_w, g.kernel_w, g.stride_w, g.pad_w);
  const auto self = static_cast<std::int32_t>(ih * g.w + iw);
  float sum = 0.0f;
  for (index_t r = rows.begin; r < rows.end; ++r) {
    for (index_t col = cols.begin; col < cols.end; ++col) {
      const index_t o = r * out_w + col;
      if (argmax_plane[o] == self) sum += load(dy_plane[o]);
    }
  }
  return sum;
}

// Mean of window (oh, ow) with padding counted as zeros (count_include_pad = true, PyTorch's
// default): the divisor is always kernel_h * kernel_w. In floor mode with padding at most half
// the kernel no window reaches past the padded edge, so that matches PyTorch everywhere.
template <class T>
GPUDL_HD inline float avg_pool_window(const T* plane, const PoolGeometry& g, index_t oh, index_t ow) {
  const pool_detail::Span rows = pool_detail::window_span(oh, g.h, g.kernel_h, g.stride_h, g.pad_h);
  const pool_detail::Span cols = pool_detail::window_span(ow, g.w, g.kernel_w, g.stride_w, g.pad_w);
  float sum = 0.0f;
  for (index_t r = rows.begin; r < rows.end; ++r) {
    for (index_t col = cols.begin; col < cols.end; ++col) sum += load(plane[r * g.w + col]);
  }
  return sum / static_cast<float>(g.kernel_h * g.kernel_w);
}

// dL/dx at input (ih, iw): the dy of every window covering it, summed in row-major window order,
// over the same fixed divisor as the forward pass.
template <class T>
GPUDL_HD inline float avg_pool_input_grad(const T* dy_plane, const PoolGeometry& g, index_t ih, index_t iw) {
  const index_t out_w = g.out_w();
  const pool_detail::Span rows = pool_detail::covering_windows(ih, g.out_h(), g.kernel_h, g.stride_h, g.pad_h);
  const pool_detail::Span cols = pool_detail::covering_windows(iw, out_w, g.kernel_w, g.stride_w, g.pad_w);
  float sum = 0.0f;
  for (index_t r = rows.begin; r < rows.end; ++r) {
    for (index_t col = cols.begin; col < cols.end; ++col) sum += load(dy_plane[r * out_w + col]);
  }
  return sum / static_cast<float>(g.kernel_h * g.kernel_w);
}

// Mean of a plane of hw values, summed in order in float: planes here are small (a ResNet's
// last feature map), and one order on both backends makes their results identical.
template <class T>
GPUDL_HD inline float plane_mean(const T* plane, index_t hw) {
  float sum = 0.0f;
  for (index_t i = 0; i < hw; ++i) sum += load(plane[i]);
  return sum / static_cast<float>(hw);
}

namespace cpu {
#include "gpudl/kernels/pool.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/pool.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
