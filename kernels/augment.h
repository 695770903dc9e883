// Image augmentation (random crop, flip, normalisation) from Philox, declared identically for both backends.
//
// The per-image choice and the per-pixel arithmetic are written once as host/device functions,
// so the CPU and CUDA backends crop, flip and round identically for the same seed and offset.
#pragma once

#include <cstdint>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/philox.h"

namespace gpudl::kernels {

// What happens to one image: the top-left corner (dy, dx) of its crop in the zero-padded
// image, each in [0, 2 * crop_padding] (so crop_padding, crop_padding is the uncropped image),
// and whether the crop is mirrored left to right.
struct AugmentChoice {
  int dy;
  int dx;
  bool flip;
};

// The choice for image `image` of a call with (seed, offset): words 0, 1 and 2 of
// philox_block(seed, offset, image) give dy, dx (multiply-shift onto [0, 2 * crop_padding],
// which is uniform to within 2^-32) and the flip (the top bit of word 2). The words are drawn
// even when unused, so turning flipping on or off leaves the crops alone. crop_padding >= 0.
GPUDL_HD inline AugmentChoice augment_choice(std::uint64_t seed, std::uint64_t offset, index_t image, int crop_padding,
                                             bool horizontal_flip) {
  const Philox4x32 r = philox_block(seed, offset, static_cast<std::uint64_t>(image));
  const std::uint64_t span = 2 * static_cast<std::uint64_t>(crop_padding) + 1;
  AugmentChoice choice;
  choice.dy = static_cast<int>((static_cast<std::uint64_t>(r.v[0]) * span) >> 32);
  choice.dx = static_cast<int>((static_cast<std::uint64_t>(r.v[1]) * span) >> 32);
  choice.flip = horizontal_flip && (r.v[2] >> 31) != 0;
  return choice;
}

// Output pixel (y, x) of channel `channel` of one image under `choice`, where `plane` is that
// channel's h x w input plane: the padded pixel the crop and flip select (0 in the padding),
// then (v - mean[channel]) * inv_std[channel], each step skipped where its pointer is null.
// With `reflect` the padding mirrors the image about its edge pixels (PyTorch's 'reflect':
// row -1 is row 1), which needs crop_padding < min(h, w).
// Written once so that both backends perform the very same float operations.
GPUDL_HD inline float augment_pixel(const float* plane, index_t h, index_t w, index_t y, index_t x, int crop_padding,
                                    bool reflect, AugmentChoice choice, const float* mean, const float* inv_std,
                                    index_t channel) {
  const index_t col = choice.flip ? w - 1 - x : x;
  index_t sy = y + choice.dy - crop_padding;
  index_t sx = col + choice.dx - crop_padding;
  if (reflect) {
    sy = sy < 0 ? -sy : (sy >= h ? 2 * (h - 1) - sy : sy);
    sx = sx < 0 ? -sx : (sx >= w ? 2 * (w - 1) - sx : sx);
  }
  float v = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? plane[sy * w + sx] : 0.0f;
  if (mean != nullptr) v = v - mean[channel];
  if (inv_std != nullptr) v = v * inv_std[channel];
  return v;
}

namespace cpu {
#include "gpudl/kernels/augment.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/augment.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
