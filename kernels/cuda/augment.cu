// CUDA image augmentation; twin of kernels/cpu/augment.cpp (identical crops, flips and values).
#include <cstdint>
#include <limits>

#include "gpudl/kernels/augment.h"
#include "gpudl/kernels/cuda/launch.cuh"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

// One thread per output element (grid-stride). Each thread redraws its image's choice: ten
// Philox rounds cost less than a second pass or a shared-memory handoff would, and the result
// is the same pure function of (seed, offset, image) that the CPU computes once per image.
// I is int32 whenever the tensor allows: the four divisions that split the element index
// are several times cheaper than in 64 bits.
template <class I>
__global__ void augment_images_kernel(float* out, const float* in, I n, I c, I h, I w, int crop_padding,
                                      bool reflect, bool horizontal_flip, const float* mean, const float* inv_std,
                                      std::uint64_t seed, std::uint64_t offset) {
  const I plane = h * w;
  const I total = n * c * plane;
  const I stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  for (I e = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); e < total;
       e += stride) {
    const I x = e % w;
    const I y = (e / w) % h;
    const I ch = (e / plane) % c;
    const I image = e / (plane * c);
    const AugmentChoice choice = augment_choice(seed, offset, image, crop_padding, horizontal_flip);
    out[e] = augment_pixel(in + (e - y * w - x), h, w, y, x, crop_padding, reflect, choice, mean, inv_std, ch);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void augment_images(float* out, const float* in, index_t n, index_t c, index_t h, index_t w, int crop_padding,
                    bool reflect, bool horizontal_flip, const float* mean, const float* inv_std, std::uint64_t seed,
                    std::uint64_t offset, const Exec& exec) {
  const index_t total = n * c * h * w;
  if (total == 0) return;
  const unsigned grid = detail::grid_for(total);
  cudaStream_t stream = detail::stream_of(exec);
  // The grid-stride increment must not overflow I either: total + one grid stays below 2^31.
  constexpr index_t kInt32Limit =
      std::numeric_limits<std::int32_t>::max() - 65536 * static_cast<index_t>(detail::kBlock);
  if (total <= kInt32Limit) {
    augment_images_kernel<std::int32_t><<<grid, detail::kBlock, 0, stream>>>(
        out, in, static_cast<std::int32_t>(n), static_cast<std::int32_t>(c), static_cast<std::int32_t>(h),
        static_cast<std::int32_t>(w), crop_padding, reflect, horizontal_flip, mean, inv_std, seed, offset);
  } else {
    augment_images_kernel<index_t><<<grid, detail::kBlock, 0, stream>>>(out, in, n, c, h, w, crop_padding,
                                                                         reflect, horizontal_flip, mean, inv_std, seed, offset);
  }
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
