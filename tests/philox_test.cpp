// Philox4x32-10 against the published known-answer vectors, and the random fills built on it.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "gpudl/kernels/cpu/philox_x16.h"
#include "gpudl/kernels/dropout.h"
#include "gpudl/kernels/philox.h"
#include "gpudl/kernels/random.h"
#include "test_util.h"

namespace gpudl {
namespace {

using kernels::Philox4x32;

struct Kat {
  Philox4x32 counter;
  std::uint32_t key[2];
  Philox4x32 expected;
};

// Random123's kat_vectors, "philox4x32 10" lines (Salmon et al., SC'11).
TEST(Philox, MatchesPublishedKnownAnswers) {
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, {0, 0}, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       {0xffffffffu, 0xffffffffu},
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       {0xa4093822u, 0x299f31d0u},
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& kat : kats) {
    const Philox4x32 got = kernels::philox4x32_10(kat.counter, kat.key[0], kat.key[1]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got.v[i], kat.expected.v[i]) << "word " << i;
  }
}

// Every CPU path that makes 64 elements' words at once must give philox_block's words in
// element order, including where the block index's low word wraps inside the sixteen blocks
// (and inside the AVX2 path's second eight). A path this CPU lacks is a visible skip.
void expect_words64_match(kernels::cpu::PhiloxPath path) {
  std::uint32_t probe[kernels::cpu::kPhiloxChunk];
  if (!kernels::cpu::philox_words64_path(path, 0, 0, 0, probe)) GTEST_SKIP() << "this CPU lacks the path";
  const std::uint64_t seeds[] = {0, 0x0123456789ABCDEFull, ~0ull};
  const std::uint64_t offsets[] = {0, 7, 0xFFFFFFFF00000001ull};
  const std::uint64_t firsts[] = {0, 1, 16, 0xFFFFFFF8ull, 0xFFFFFFFBull, 0xFFFFFFFFull, 0x1FFFFFFF5ull, ~0ull - 20};
  for (const std::uint64_t seed : seeds) {
    for (const std::uint64_t offset : offsets) {
      for (const std::uint64_t first : firsts) {
        std::uint32_t got[kernels::cpu::kPhiloxChunk], chosen[kernels::cpu::kPhiloxChunk];
        ASSERT_TRUE(kernels::cpu::philox_words64_path(path, seed, offset, first, got));
        kernels::cpu::philox_words64(seed, offset, first, chosen);
        for (int k = 0; k < kernels::cpu::kPhiloxChunk; ++k) {
          const std::uint32_t want =
              kernels::philox_block(seed, offset, first + static_cast<std::uint64_t>(k / 4)).v[k % 4];
          ASSERT_EQ(got[k], want) << "seed " << seed << " offset " << offset << " first block " << first << " word " << k;
          ASSERT_EQ(chosen[k], want) << "philox_words64: seed " << seed << " offset " << offset << " first block "
                                     << first << " word " << k;
        }
      }
    }
  }
}

TEST(Philox, Words64Avx512MatchOneBlockAtATime) { expect_words64_match(kernels::cpu::PhiloxPath::kAvx512); }
TEST(Philox, Words64Avx2MatchOneBlockAtATime) { expect_words64_match(kernels::cpu::PhiloxPath::kAvx2); }
TEST(Philox, Words64PortableMatchOneBlockAtATime) { expect_words64_match(kernels::cpu::PhiloxPath::kPortable); }

// The CPU dropout kernel against its documented per-element definition, at sizes that end
// inside a Philox block and inside a 64-element chunk, and large enough to be split over threads.
TEST(Philox, CpuDropoutMaskFollowsTheDocumentedLayout) {
  const float p = 0.3f;
  for (const kernels::index_t n : {1, 3, 5, 63, 64, 65, 1000, 200003}) {
    std::vector<float> x(static_cast<std::size_t>(n)), y(x.size()), mask(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.5f + static_cast<float>(i % 7);
    kernels::cpu::dropout_forward(y.data(), mask.data(), x.data(), DType::kF32, n, p, 42, 9, kernels::Exec{});
    int dropped = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float u = kernels::uniform01(kernels::philox_block(42, 9, i / 4).v[i % 4]);
      ASSERT_EQ(mask[i], kernels::dropout_scale(u, p)) << "n " << n << " element " << i;
      ASSERT_EQ(y[i], x[i] * mask[i]) << "n " << n << " element " << i;
      dropped += mask[i] == 0.0f;
    }
    if (n == 200003) {
      EXPECT_NEAR(dropped, 0.3 * n, 5 * std::sqrt(0.21 * n));  // binomial: 5 standard deviations
    }
  }
}

// With the offset read from memory, the CPU kernel draws the mask of that offset.
TEST(Philox, CpuDropoutAtReadsItsOffsetFromMemory) {
  const kernels::index_t n = 1000;
  std::vector<float> x(static_cast<std::size_t>(n), 1.5f), y(x.size()), mask(x.size()), y_at(x.size()),
      mask_at(x.size());
  kernels::cpu::dropout_forward(y.data(), mask.data(), x.data(), DType::kF32, n, 0.4f, 42, 17, kernels::Exec{});
  const std::int64_t offset = 17;
  kernels::cpu::dropout_forward_at(y_at.data(), mask_at.data(), x.data(), DType::kF32, n, 0.4f, 42, &offset,
                                   kernels::Exec{});
  EXPECT_EQ(mask_at, mask);
  EXPECT_EQ(y_at, y);
}

// A generator's device copy of its offset: unknown at first and after set_state, and moved on
// by advance() with the offset when known.
TEST(Philox, GeneratorTracksADeviceCopyOfItsOffset) {
  Generator g(7);
  EXPECT_EQ(g.device_offset(), Generator::kNoDeviceOffset);
  g.next_offset();
  g.set_device_offset(1);
  g.advance(3);
  EXPECT_EQ(g.offset(), 4u);
  EXPECT_EQ(g.device_offset(), 4u);
  g.set_state(7, 10);
  EXPECT_EQ(g.device_offset(), Generator::kNoDeviceOffset);
  g.advance(2);
  EXPECT_EQ(g.offset(), 12u);
  EXPECT_EQ(g.device_offset(), Generator::kNoDeviceOffset);
}

TEST(Philox, UniformTransformStaysInHalfOpenInterval) {
  EXPECT_EQ(kernels::uniform01(0u), 0.0f);
  EXPECT_LT(kernels::uniform01(0xffffffffu), 1.0f);
  EXPECT_GT(kernels::uniform01_open_low(0u), 0.0f);
  EXPECT_EQ(kernels::uniform01_open_low(0xffffffffu), 1.0f);
}

TEST(RandomFill, SameGeneratorStateGivesSameNumbers) {
  Tensor a = Tensor::empty({1001}), b = Tensor::empty({1001});
  Generator g1(42), g2(42);
  ops::uniform_(a, -2.0f, 3.0f, g1);
  ops::uniform_(b, -2.0f, 3.0f, g2);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  ops::uniform_(b, -2.0f, 3.0f, g2);  // the next offset: a different subsequence
  EXPECT_NE(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_EQ(g2.offset(), 2u);
}

TEST(RandomFill, ElementsFollowTheDocumentedLayout) {
  // Element i is word i % 4 of block i / 4: the fill and the per-element formula agree, also
  // past the first 64-element chunk and in tails that end inside a chunk.
  for (const std::int64_t n : {11, 64, 65, 130}) {
    Tensor t = Tensor::empty({n});
    Generator gen(7);
    const std::uint64_t offset = gen.offset();
    ops::uniform_(t, 0.0f, 1.0f, gen);
    const auto v = t.to_vector<float>();
    for (std::uint64_t i = 0; i < v.size(); ++i) {
      ASSERT_EQ(v[i], kernels::uniform_element(7, offset, i, 0.0f, 1.0f)) << "n " << n << " element " << i;
    }
  }
}

// The largest word once rounded up to high itself on [2, 4) (2 + 2 (1 - 2^-24) is a tie that
// rounds to 4): about one fill of 200,000 in 50 had an element equal to high.
TEST(RandomFill, LargestWordStaysBelowHigh) {
  EXPECT_EQ(kernels::uniform_value(0xFFFFFFFFu, 2.0f, 4.0f), std::nextafter(4.0f, 2.0f));
  EXPECT_LT(kernels::uniform_value(0xFFFFFFFFu, -1.0f, 1.0f), 1.0f);
  EXPECT_EQ(kernels::uniform_value(0u, 2.0f, 4.0f), 2.0f);
}

TEST(RandomFill, UniformMomentsMatch) {
  const std::int64_t n = 200000;
  Tensor t = Tensor::empty({n});
  Generator gen(testing::test_seed());
  ops::uniform_(t, 2.0f, 4.0f, gen);
  double sum = 0, sq = 0, lo = 1e9, hi = -1e9;
  for (float x : t.to_vector<float>()) {
    sum += x;
    sq += x * x;
    lo = std::min<double>(lo, x);
    hi = std::max<double>(hi, x);
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  // Standard error of the mean is sqrt(1/3 / n) = 0.0013; allow about 5 of them.
  EXPECT_NEAR(mean, 3.0, 0.007);
  EXPECT_NEAR(var, 1.0 / 3.0, 0.01);
  EXPECT_GE(lo, 2.0);
  EXPECT_LT(hi, 4.0);
}

TEST(RandomFill, NormalMomentsMatch) {
  const std::int64_t n = 200001;  // odd: the tail of the last block of four is used too
  Tensor t = Tensor::empty({n});
  Generator gen(testing::test_seed());
  ops::normal_(t, 1.5f, 2.0f, gen);
  double sum = 0, sq = 0, within = 0;
  for (float x : t.to_vector<float>()) {
    sum += x;
    sq += x * x;
    within += std::abs(x - 1.5) < 2.0;
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  EXPECT_NEAR(mean, 1.5, 0.025);          // 5 standard errors: 5 * 2 / sqrt(n)
  EXPECT_NEAR(var, 4.0, 0.07);
  EXPECT_NEAR(within / n, 0.6827, 0.006);  // one sigma
}

TEST(RandomFill, RejectsBadParameters) {
  Tensor t = Tensor::empty({4});
  Generator gen(1);
  EXPECT_THROW(ops::uniform_(t, 1.0f, 0.0f, gen), ValueError);
  EXPECT_THROW(ops::normal_(t, 0.0f, -1.0f, gen), ValueError);
  Tensor ints = Tensor::empty({4}, DType::kI32);
  EXPECT_THROW(ops::uniform_(ints, 0.0f, 1.0f, gen), ValueError);
}

}  // namespace
}  // namespace gpudl
