// Upsampling of NCHW images by an integer factor (nearest, or bilinear as PyTorch's
// align_corners=False; f32, bf16 or f16 read in FP32), declared identically for both backends;
// the per-element math is written once here and shared, so the twins agree exactly.
#pragma once

#include <cstdint>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/dtype.h"

namespace gpudl::kernels {

enum class UpsampleMode : std::uint8_t {
  kNearest,   // output (oy, ox) = input (oy / scale, ox / scale)
  kBilinear,  // PyTorch's align_corners=False: source (o + 0.5) / scale - 0.5, clamped below at 0
};

// An (n, c, h, w) input and its (n, c, h scale, w scale) output. Kernels do not check the
// geometry; callers make sure valid() holds first.
struct UpsampleGeometry {
  index_t n = 0, c = 0, h = 0, w = 0;
  index_t scale = 1;
  UpsampleMode mode = UpsampleMode::kNearest;

  GPUDL_HD index_t out_h() const { return h * scale; }
  GPUDL_HD index_t out_w() const { return w * scale; }
  GPUDL_HD bool valid() const { return n >= 0 && c >= 0 && h >= 1 && w >= 1 && scale >= 1; }
};

namespace upsample_detail {

// The two inputs an output interpolates along one axis: (1 - w1) x[i0] + w1 x[i1].
struct Taps {
  index_t i0, i1;
  float w1;
};

// PyTorch's taps for output o along an axis of `size` inputs. For an integer scale the source
// position (o + 0.5) / scale - 0.5 is i + (2 r + 1 - scale) / (2 scale) with i = o / scale and
// r = o % scale, so the weight is one division of small exact integers: correctly rounded, the
// same on both backends, where PyTorch's float arithmetic may differ from it in the last bit.
// As PyTorch: a source below 0 is clamped to 0, and at the last input both taps are that input.
GPUDL_HD inline Taps bilinear_taps(index_t o, index_t size, index_t scale) {
  const index_t i = o / scale, numerator = 2 * (o % scale) + 1 - scale, denominator = 2 * scale;
  if (numerator < 0) {
    if (i == 0) return {0, size > 1 ? 1 : 0, 0.0f};
    return {i - 1, i, static_cast<float>(numerator + denominator) / static_cast<float>(denominator)};
  }
  return {i, i + 1 < size ? i + 1 : i, static_cast<float>(numerator) / static_cast<float>(denominator)};
}

// Input i's weight in output o's interpolation (both taps when they are the same input).
GPUDL_HD inline float tap_weight(const Taps& t, index_t i) {
  return (t.i0 == i ? 1.0f - t.w1 : 0.0f) + (t.i1 == i ? t.w1 : 0.0f);
}

// The outputs [begin, end) whose taps can reach input i: those with o / scale in {i - 1, i, i + 1}.
GPUDL_HD inline void reaching_outputs(index_t i, index_t outputs, index_t scale, index_t* begin, index_t* end) {
  *begin = i >= 1 ? (i - 1) * scale : 0;
  *end = (i + 2) * scale < outputs ? (i + 2) * scale : outputs;
}

}  // namespace upsample_detail

// Output (oy, ox) of one (h, w) plane. Bilinear in PyTorch's order: the rows' interpolations
// (along x) first, then between them.
template <class T>
GPUDL_HD inline float upsample_value(const T* plane, const UpsampleGeometry& g, index_t oy, index_t ox) {
  if (g.mode == UpsampleMode::kNearest) return load(plane[(oy / g.scale) * g.w + ox / g.scale]);
  const upsample_detail::Taps ty = upsample_detail::bilinear_taps(oy, g.h, g.scale);
  const upsample_detail::Taps tx = upsample_detail::bilinear_taps(ox, g.w, g.scale);
  const float wy0 = 1.0f - ty.w1, wx0 = 1.0f - tx.w1;
  const T* r0 = plane + ty.i0 * g.w;
  const T* r1 = plane + ty.i1 * g.w;
  return wy0 * (wx0 * load(r0[tx.i0]) + tx.w1 * load(r0[tx.i1])) +
         ty.w1 * (wx0 * load(r1[tx.i0]) + tx.w1 * load(r1[tx.i1]));
}

// dL/dx at input (iy, ix) of one plane: every output it feeds, times its weight there, summed
// in row-major output order. Gathering per input gives each element one writer, so the CUDA
// twin needs no atomics and is deterministic.
template <class T>
GPUDL_HD inline float upsample_input_grad(const T* dy_plane, const UpsampleGeometry& g, index_t iy, index_t ix) {
  const index_t out_w = g.out_w();
  float sum = 0.0f;
  if (g.mode == UpsampleMode::kNearest) {
    for (index_t oy = iy * g.scale; oy < (iy + 1) * g.scale; ++oy) {
      for (index_t ox = ix * g.scale; ox < (ix + 1) * g.scale; ++ox) sum += load(dy_plane[oy * out_w + ox]);
    }
    return sum;
  }
  index_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  upsample_detail::reaching_outputs(iy, g.out_h(), g.scale, &y0, &y1);
  upsample_detail::reaching_outputs(ix, out_w, g.scale, &x0, &x1);
  for (index_t oy = y0; oy < y1; ++oy) {
    const float wy = upsample_detail::tap_weight(upsample_detail::bilinear_taps(oy, g.h, g.scale), iy);
    float row = 0.0f;
    for (index_t ox = x0; ox < x1; ++ox) {
      const float wx = upsample_detail::tap_weight(upsample_detail::bilinear_taps(ox, g.w, g.scale), ix);
      row += wx * load(dy_plane[oy * out_w + ox]);
    }
    sum += wy * row;
  }
  return sum;
}

namespace cpu {
#include "gpudl/kernels/upsample.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/upsample.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
