// CPU reference implementation of image augmentation (random crop, flip, normalisation).
#include "gpudl/kernels/augment.h"

namespace gpudl::kernels::cpu {

void augment_images(float* out, const float* in, index_t n, index_t c, index_t h, index_t w, int crop_padding,
                    bool reflect, bool horizontal_flip, const float* mean, const float* inv_std, std::uint64_t seed,
                    std::uint64_t offset, const Exec&) {
  const index_t plane = h * w;
  for (index_t i = 0; i < n; ++i) {
    // One draw per image, shared by all its channels: the CUDA twin redraws it per element
    // and gets the same answer because the choice is a pure function of (seed, offset, i).
    const AugmentChoice choice = augment_choice(seed, offset, i, crop_padding, horizontal_flip);
    for (index_t ch = 0; ch < c; ++ch) {
      const index_t base = (i * c + ch) * plane;
      const float* src = in + base;
      float* dst = out + base;
      for (index_t y = 0; y < h; ++y) {
        for (index_t x = 0; x < w; ++x) {
          dst[y * w + x] = augment_pixel(src, h, w, y, x, crop_padding, reflect, choice, mean, inv_std, ch);
        }
      }
    }
  }
}

}  // namespace gpudl::kernels::cpu
