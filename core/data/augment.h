// Random crop, horizontal flip and per-channel normalisation of NCHW image batches, and CIFAR-10 presets.
#pragma once

#include <cstdint>
#include <vector>

#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/tensor.h"
#include "gpudl/kernels/common.h"

namespace gpudl::data {

struct AugmentOptions {
  // Pad every side by this many zero pixels and take a random crop of the original size
  // (offsets uniform in [0, 2 * crop_padding]); 0 = no crop.
  int crop_padding = 0;
  // Pad with the image mirrored about its edge pixels (PyTorch's 'reflect') instead of zeros;
  // needs crop_padding < min(H, W).
  bool reflect_padding = false;
  // Mirror each image left to right with probability 1/2.
  bool horizontal_flip = false;
  // Per channel: x <- (x - mean[c]) / stddev[c] after cropping and flipping (so the padding
  // becomes -mean[c] / stddev[c]). Both empty = no normalisation. (The initialisers keep
  // designated initialisers that leave these out free of -Wmissing-field-initializers.)
  std::vector<float> mean = {};
  std::vector<float> stddev = {};
};

// out <- `in` (N, C, H, W) f32 augmented per image as `options` say, enqueued on exec's stream
// (Context::get(device).exec() for the compute stream, copy_exec() to augment a prefetched
// batch on the copy stream; ignored on the CPU, where the work is done on return). Image i's
// crop and flip are kernels::augment_choice(seed, offset, i, ...): a pure function of
// (seed, offset, i), identical on both backends, so take a fresh offset per batch (for example
// Generator::next_offset()). The division by stddev is a multiplication by 1.0f / stddev on
// both backends. On a GPU the mean and 1 / stddev values are uploaded once per distinct
// (device, mean, stddev) and kept for later calls. Both tensors must stay alive, and out
// unread, until the stream has run the work; ordering exec's stream against the producer of
// `in` and the consumer of `out` (with Events) is the caller's job.
// Throws ValueError for an undefined tensor, a dtype other than f32, out sharing memory with
// in, crop_padding outside [0, min(H, W)], mean and stddev not both empty or both of C values,
// or a stddev that is not > 0 and finite or a mean that is not finite; ShapeError when in is
// not 4-D or out's shape differs from in's; DeviceError when the tensors are on different
// devices or a CUDA tensor reaches a build without CUDA; OutOfMemoryError when the
// normalisation values cannot be uploaded.
void augment(const Tensor& out, const Tensor& in, const AugmentOptions& options, std::uint64_t seed,
             std::uint64_t offset, const kernels::Exec& exec);

// Training-time CIFAR-10 augmentation: crop_padding 4, horizontal flip, and the usual channel
// means (0.4914, 0.4822, 0.4465) and standard deviations (0.2470, 0.2435, 0.2616) of the
// training set, for inputs scaled to [0, 1]. Never throws (beyond std::bad_alloc).
AugmentOptions cifar10_augmentation();

// The normalisation of cifar10_augmentation() alone, for test data. Never throws (beyond
// std::bad_alloc).
AugmentOptions cifar10_normalization();

}  // namespace gpudl::data
