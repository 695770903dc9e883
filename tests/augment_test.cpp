// CPU augmentation: hand-worked crops, flips and normalisation, determinism, statistics, argument errors.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gpudl/core/data/augment.h"
#include "gpudl/kernels/augment.h"
#include "test_util.h"

namespace gpudl::data {
namespace {

using kernels::augment_choice;
using kernels::AugmentChoice;

// `in` (shape) augmented on the CPU, as a flat vector.
std::vector<float> run(const std::vector<float>& in, const Shape& shape, const AugmentOptions& o, std::uint64_t seed,
                       std::uint64_t offset = 0) {
  const Tensor x = Tensor::from_vector(in, shape);
  Tensor y = Tensor::full(shape, std::numeric_limits<double>::quiet_NaN());
  augment(y, x, o, seed, offset, kernels::Exec{});
  return y.to_vector<float>();
}

// The first seed whose image 0 (offset 0) gets exactly `want`: tests pick the decision they
// work out by hand and let the search find a seed that makes it.
std::uint64_t seed_for(AugmentChoice want, int crop_padding, bool horizontal_flip) {
  for (std::uint64_t seed = 0; seed < 100000; ++seed) {
    const AugmentChoice c = augment_choice(seed, 0, 0, crop_padding, horizontal_flip);
    if (c.dy == want.dy && c.dx == want.dx && c.flip == want.flip) return seed;
  }
  ADD_FAILURE() << "no seed gives dy " << want.dy << ", dx " << want.dx << ", flip " << want.flip;
  return 0;
}

// A 3 x 3 image holding 1..9 in row-major order.
const std::vector<float> kNine{1, 2, 3, 4, 5, 6, 7, 8, 9};
const Shape kNineShape{1, 1, 3, 3};

TEST(AugmentByHand, CropsFromTheZeroPaddedImage) {
  const AugmentOptions crop{.crop_padding = 1};
  // Top-left corner of the crop at (0, 2) in the padded 5 x 5 image: one row of padding on
  // top, the image's columns 1 and 2, then a column of padding on the right.
  EXPECT_EQ(run(kNine, kNineShape, crop, seed_for({0, 2, false}, 1, false)),
            (std::vector<float>{0, 0, 0,  //
                                2, 3, 0,  //
                                5, 6, 0}));
  // (2, 0): the image's rows 1 and 2 and columns 0 and 1, shifted right, padding below.
  EXPECT_EQ(run(kNine, kNineShape, crop, seed_for({2, 0, false}, 1, false)),
            (std::vector<float>{0, 4, 5,  //
                                0, 7, 8,  //
                                0, 0, 0}));
  // (1, 1) is the image itself.
  EXPECT_EQ(run(kNine, kNineShape, crop, seed_for({1, 1, false}, 1, false)), kNine);
}

TEST(AugmentByHand, ReflectPaddingMirrorsAboutTheEdgePixels) {
  const AugmentOptions crop{.crop_padding = 1, .reflect_padding = true};
  // Corner (0, 2) of the reflect-padded 5 x 5 image: row -1 is row 1, column 3 is column 1.
  EXPECT_EQ(run(kNine, kNineShape, crop, seed_for({0, 2, false}, 1, false)),
            (std::vector<float>{5, 6, 5,  //
                                2, 3, 2,  //
                                5, 6, 5}));
  // (2, 0), mirrored: row 3 is row 1, column -1 is column 1, and the flip comes after the crop.
  const AugmentOptions flip{.crop_padding = 1, .reflect_padding = true, .horizontal_flip = true};
  EXPECT_EQ(run(kNine, kNineShape, flip, seed_for({2, 0, true}, 1, true)),
            (std::vector<float>{5, 4, 5,  //
                                8, 7, 8,  //
                                5, 4, 5}));
}

TEST(AugmentByHand, FlipsLeftToRight) {
  const AugmentOptions flip{.horizontal_flip = true};
  EXPECT_EQ(run(kNine, kNineShape, flip, seed_for({0, 0, true}, 0, true)),
            (std::vector<float>{3, 2, 1,  //
                                6, 5, 4,  //
                                9, 8, 7}));
  EXPECT_EQ(run(kNine, kNineShape, flip, seed_for({0, 0, false}, 0, true)), kNine);
  // Without horizontal_flip nothing is mirrored, even where the flip bit is set.
  EXPECT_EQ(run(kNine, kNineShape, {}, seed_for({0, 0, true}, 0, true)), kNine);
}

TEST(AugmentByHand, CropsThenFlips) {
  // Crop at (0, 0): padding on top and left, then mirrored so the padding is on the right.
  EXPECT_EQ(run(kNine, kNineShape, {.crop_padding = 1, .horizontal_flip = true}, seed_for({0, 0, true}, 1, true)),
            (std::vector<float>{0, 0, 0,  //
                                2, 1, 0,  //
                                5, 4, 0}));
}

TEST(AugmentByHand, NormalisesPerChannelAfterCropping) {
  // Two channels of 2 x 2; every value and result below is exact in float.
  const std::vector<float> in{1.0f, 0.5f, 0.0f, 0.75f,  // channel 0
                              1.0f, 3.0f, -1.0f, 0.0f};  // channel 1
  const Shape shape{1, 2, 2, 2};
  const AugmentOptions norm{.mean = {0.5f, -1.0f}, .stddev = {0.25f, 2.0f}};
  // (x - 0.5) * 4 and (x + 1) * 0.5.
  EXPECT_EQ(run(in, shape, norm, 3), (std::vector<float>{2, 0, -2, 1, 1, 2, 0, 0.5f}));
  // Crop at (0, 0) with padding 1: only the image's (0, 0) stays, at (1, 1); the padding is
  // normalised like any zero, to -0.5 * 4 and +1 * 0.5.
  AugmentOptions both = norm;
  both.crop_padding = 1;
  EXPECT_EQ(run(in, shape, both, seed_for({0, 0, false}, 1, false)),
            (std::vector<float>{-2, -2, -2, 2, 0.5f, 0.5f, 0.5f, 1}));
}

// An independent reference: pad explicitly, crop, mirror, normalise.
std::vector<float> reference(const std::vector<float>& in, std::int64_t n, std::int64_t c, std::int64_t h,
                             std::int64_t w, const AugmentOptions& o, std::uint64_t seed, std::uint64_t offset) {
  const std::int64_t p = o.crop_padding, ph = h + 2 * p, pw = w + 2 * p;
  std::vector<float> out;
  for (std::int64_t i = 0; i < n; ++i) {
    const AugmentChoice choice = augment_choice(seed, offset, i, o.crop_padding, o.horizontal_flip);
    for (std::int64_t ch = 0; ch < c; ++ch) {
      std::vector<float> padded(static_cast<std::size_t>(ph * pw), 0.0f);
      for (std::int64_t y = 0; y < h; ++y) {
        for (std::int64_t x = 0; x < w; ++x) {
          padded[static_cast<std::size_t>((y + p) * pw + x + p)] =
              in[static_cast<std::size_t>(((i * c + ch) * h + y) * w + x)];
        }
      }
      for (std::int64_t y = 0; y < h; ++y) {
        for (std::int64_t x = 0; x < w; ++x) {
          const std::int64_t cx = choice.flip ? w - 1 - x : x;
          float v = padded[static_cast<std::size_t>((y + choice.dy) * pw + cx + choice.dx)];
          if (!o.mean.empty()) {
            const auto k = static_cast<std::size_t>(ch);
            v = (v - o.mean[k]) * (1.0f / o.stddev[k]);
          }
          out.push_back(v);
        }
      }
    }
  }
  return out;
}

TEST(AugmentBatch, EachImageFollowsItsOwnChoiceInEveryChannel) {
  const std::int64_t n = 40, c = 3, h = 6, w = 5;
  const std::vector<float> in = testing::random_vector(static_cast<std::size_t>(n * c * h * w), 1, 0.0f, 1.0f);
  const AugmentOptions o{.crop_padding = 2, .horizontal_flip = true, .mean = {0.4f, 0.5f, 0.6f},
                         .stddev = {0.2f, 0.3f, 0.7f}};
  const std::uint64_t seed = testing::test_seed();
  EXPECT_EQ(run(in, {n, c, h, w}, o, seed, 9), reference(in, n, c, h, w, o, seed, 9));
  // The choices are not all alike, or this would prove little.
  int flips = 0;
  for (std::int64_t i = 0; i < n; ++i) flips += augment_choice(seed, 9, i, 2, true).flip ? 1 : 0;
  EXPECT_GT(flips, 0);
  EXPECT_LT(flips, n);
}

TEST(AugmentBatch, IsAPureFunctionOfSeedAndOffset) {
  const Shape shape{64, 3, 8, 8};
  const std::vector<float> in = testing::random_vector(static_cast<std::size_t>(shape.numel()), 2, 0.0f, 1.0f);
  const AugmentOptions o{.crop_padding = 4, .horizontal_flip = true};
  const std::uint64_t seed = testing::test_seed();
  const std::vector<float> first = run(in, shape, o, seed, 5);
  EXPECT_EQ(run(in, shape, o, seed, 5), first);
  EXPECT_NE(run(in, shape, o, seed, 6), first);
  EXPECT_NE(run(in, shape, o, seed + 1, 5), first);
  // The choice goes with the image's place in the batch: the same images one place earlier
  // are cropped and flipped otherwise.
  const std::vector<float> tail(in.begin() + 3 * 8 * 8, in.end());
  const std::vector<float> all = run(in, shape, o, seed, 5);
  EXPECT_NE(run(tail, {63, 3, 8, 8}, o, seed, 5), std::vector<float>(all.begin() + 3 * 8 * 8, all.end()));
}

TEST(AugmentBatch, PaddingIsZeroBeforeNormalisation) {
  const std::int64_t n = 200, c = 3, h = 8, w = 8;
  const int pad = 3;
  const std::vector<float> ones(static_cast<std::size_t>(n * c * h * w), 1.0f);
  const std::uint64_t seed = testing::test_seed();
  const std::vector<float> out = run(ones, {n, c, h, w}, {.crop_padding = pad, .horizontal_flip = true}, seed, 1);
  for (std::int64_t i = 0; i < n; ++i) {
    const AugmentChoice ch = augment_choice(seed, 1, i, pad, true);
    for (std::int64_t k = 0; k < c; ++k) {
      for (std::int64_t y = 0; y < h; ++y) {
        for (std::int64_t x = 0; x < w; ++x) {
          const std::int64_t col = ch.flip ? w - 1 - x : x;
          const bool inside = y + ch.dy - pad >= 0 && y + ch.dy - pad < h && col + ch.dx - pad >= 0 &&
                              col + ch.dx - pad < w;
          ASSERT_EQ(out[static_cast<std::size_t>(((i * c + k) * h + y) * w + x)], inside ? 1.0f : 0.0f)
              << "image " << i << " channel " << k << " at (" << y << ", " << x << ")";
        }
      }
    }
  }
}

TEST(AugmentStatistics, FlipsHalfTheTime) {
  const std::int64_t n = 10000;
  std::vector<float> in;
  for (std::int64_t i = 0; i < n; ++i) in.insert(in.end(), {1.0f, 2.0f});
  const std::vector<float> out = run(in, {n, 1, 1, 2}, {.horizontal_flip = true}, testing::test_seed());
  std::int64_t flips = 0;
  for (std::int64_t i = 0; i < n; ++i) flips += out[static_cast<std::size_t>(2 * i)] == 2.0f ? 1 : 0;
  // Binomial(10000, 1/2): standard deviation 50, so 5 sigma either way.
  EXPECT_NEAR(static_cast<double>(flips), 5000.0, 250.0);
}

TEST(AugmentStatistics, CropOffsetsCoverTheWholeRangeEvenly) {
  const std::int64_t n = 10000, side = 5;
  const int pad = 2;
  // Pixel (y, x) holds y * 5 + x, so the centre of the output, padded (2 + dy, 2 + dx), is
  // the image's (dy, dx) and tells both offsets.
  std::vector<float> in;
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t p = 0; p < side * side; ++p) in.push_back(static_cast<float>(p));
  }
  const std::uint64_t seed = testing::test_seed();
  const std::vector<float> out = run(in, {n, 1, side, side}, {.crop_padding = pad}, seed);
  std::array<std::int64_t, 5> dy_counts{}, dx_counts{};
  std::array<std::int64_t, 25> pair_counts{};
  for (std::int64_t i = 0; i < n; ++i) {
    const auto centre = static_cast<std::int64_t>(out[static_cast<std::size_t>(i * side * side + 2 * side + 2)]);
    const std::int64_t dy = centre / side, dx = centre % side;
    const AugmentChoice ch = augment_choice(seed, 0, i, pad, false);
    ASSERT_EQ(dy, ch.dy) << "image " << i;
    ASSERT_EQ(dx, ch.dx) << "image " << i;
    ++dy_counts[static_cast<std::size_t>(dy)];
    ++dx_counts[static_cast<std::size_t>(dx)];
    ++pair_counts[static_cast<std::size_t>(centre)];
  }
  // Binomial(10000, 1/5) per offset: standard deviation 40; 5 sigma either way.
  for (std::size_t v = 0; v < 5; ++v) {
    EXPECT_NEAR(static_cast<double>(dy_counts[v]), 2000.0, 200.0) << "dy = " << v;
    EXPECT_NEAR(static_cast<double>(dx_counts[v]), 2000.0, 200.0) << "dx = " << v;
  }
  // And jointly: every (dy, dx) of the 25 shows up about 400 times (standard deviation 19.6).
  for (std::size_t v = 0; v < 25; ++v) EXPECT_NEAR(static_cast<double>(pair_counts[v]), 400.0, 100.0) << v;
}

using testing::error_of;

TEST(AugmentArguments, RejectsBadTensors) {
  const Tensor x = Tensor::zeros({2, 3, 4, 4});
  const Tensor y = Tensor::zeros({2, 3, 4, 4});
  const kernels::Exec cpu{};
  EXPECT_EQ(error_of<ValueError>([&] { augment(Tensor(), x, {}, 1, 0, cpu); }),
            "augment: out is an undefined tensor");
  EXPECT_EQ(error_of<ValueError>([&] { augment(y, Tensor::zeros({2, 3, 4, 4}, DType::kI64), {}, 1, 0, cpu); }),
            "augment: in [2, 3, 4, 4] has dtype i64, only f32 is supported");
  EXPECT_EQ(error_of<ShapeError>([&] { augment(Tensor::zeros({3, 4, 4}), Tensor::zeros({3, 4, 4}), {}, 1, 0, cpu); }),
            "augment: in [3, 4, 4] must be 4-D (N, C, H, W)");
  EXPECT_EQ(error_of<ShapeError>([&] { augment(Tensor::zeros({2, 3, 4, 5}), x, {}, 1, 0, cpu); }),
            "augment: out [2, 3, 4, 5] and in [2, 3, 4, 4] differ in shape");
  EXPECT_EQ(error_of<ValueError>([&] { augment(x, x, {}, 1, 0, cpu); }),
            "augment: out [2, 3, 4, 4] shares memory with in");
  // Overlapping views of one buffer are as bad as the same tensor.
  const Tensor whole = Tensor::zeros({3, 3, 4, 4});
  EXPECT_EQ(error_of<ValueError>([&] { augment(whole.slice(1, 3), whole.slice(0, 2), {}, 1, 0, cpu); }),
            "augment: out [2, 3, 4, 4] shares memory with in");
  EXPECT_NO_THROW(augment(whole.slice(2, 3), whole.slice(1, 2), {}, 1, 0, cpu));
}

TEST(AugmentArguments, RejectsBadOptions) {
  const Tensor x = Tensor::zeros({2, 3, 4, 6});
  const Tensor y = Tensor::zeros({2, 3, 4, 6});
  auto fails = [&](const AugmentOptions& o) { return error_of<ValueError>([&] { augment(y, x, o, 1, 0, {}); }); };
  EXPECT_EQ(fails({.crop_padding = -1}), "augment: crop_padding -1 is outside [0, 4] for 4 x 6 images");
  EXPECT_EQ(fails({.crop_padding = 5}), "augment: crop_padding 5 is outside [0, 4] for 4 x 6 images");
  EXPECT_NO_THROW(augment(y, x, {.crop_padding = 4}, 1, 0, {}));
  EXPECT_EQ(fails({.crop_padding = 4, .reflect_padding = true}),
            "augment: reflect padding of 4 needs images larger than 4 pixels on each side, got 4 x 6");
  EXPECT_NO_THROW(augment(y, x, {.crop_padding = 3, .reflect_padding = true}, 1, 0, {}));
  EXPECT_EQ(fails({.mean = {0.5f, 0.5f}, .stddev = {1.0f, 1.0f}}),
            "augment: mean has 2 values and stddev 2; expected 3 each (one per channel) or none");
  EXPECT_EQ(fails({.mean = {0.5f, 0.5f, 0.5f}}),
            "augment: mean has 3 values and stddev 0; expected 3 each (one per channel) or none");
  EXPECT_EQ(fails({.mean = {0, 0, 0}, .stddev = {1.0f, 0.0f, 1.0f}}),
            "augment: stddev[1] = 0.000000 must be > 0 and finite");
  EXPECT_EQ(fails({.mean = {0, 0, 0}, .stddev = {1.0f, 1.0f, -2.0f}}),
            "augment: stddev[2] = -2.000000 must be > 0 and finite");
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(fails({.mean = {0, 0, 0}, .stddev = {nan, 1.0f, 1.0f}}).rfind("augment: stddev[0] = ", 0), 0u);
  EXPECT_EQ(fails({.mean = {0, 0, 0}, .stddev = {inf, 1.0f, 1.0f}}).rfind("augment: stddev[0] = ", 0), 0u);
  EXPECT_EQ(fails({.mean = {0, inf, 0}, .stddev = {1.0f, 1.0f, 1.0f}}), "augment: mean[1] = inf is not finite");
}

TEST(AugmentArguments, AnEmptyBatchIsANoOp) {
  EXPECT_NO_THROW(augment(Tensor::zeros({0, 3, 32, 32}), Tensor::zeros({0, 3, 32, 32}), cifar10_augmentation(), 1, 0,
                          {}));
}

TEST(AugmentPresets, Cifar10AugmentationAndNormalization) {
  const AugmentOptions train = cifar10_augmentation();
  EXPECT_EQ(train.crop_padding, 4);
  EXPECT_TRUE(train.horizontal_flip);
  EXPECT_EQ(train.mean, (std::vector<float>{0.4914f, 0.4822f, 0.4465f}));
  EXPECT_EQ(train.stddev, (std::vector<float>{0.2470f, 0.2435f, 0.2616f}));
  const AugmentOptions test = cifar10_normalization();
  EXPECT_EQ(test.crop_padding, 0);
  EXPECT_FALSE(test.horizontal_flip);
  EXPECT_EQ(test.mean, train.mean);
  EXPECT_EQ(test.stddev, train.stddev);
  // Normalisation alone leaves the pixels in place: x -> (x - mean) * (1 / std), per channel.
  const std::vector<float> in = testing::random_vector(2 * 3 * 32 * 32, 3, 0.0f, 1.0f);
  const std::vector<float> out = run(in, {2, 3, 32, 32}, test, testing::test_seed());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const std::size_t ch = (i / 1024) % 3;
    ASSERT_EQ(out[i], (in[i] - test.mean[ch]) * (1.0f / test.stddev[ch])) << i;
  }
}

}  // namespace
}  // namespace gpudl::data
