// The f32 <-> bf16 and f32 <-> f16 conversions of the CPU backend against the scalar reference
// of kernels/dtype.h (which the CUDA kernels share), bit for bit, through every path.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gpudl/kernels/cpu/convert.h"
#include "test_util.h"

namespace gpudl {
namespace {

using gpudl::BFloat16;
using gpudl::Half;
namespace cpu = kernels::cpu;

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Floats that reach every exponent, every rounding case of both narrow types (halfway ties
// with an even and an odd kept bit, just below and above them), subnormals, infinities and
// NaNs (quiet, signalling, both signs): every pattern with its low 8 bits zero, then 2^20
// random patterns. The length is odd, so the vector loops' tails run too.
std::vector<float> probe_floats() {
  std::vector<float> v;
  v.reserve((1u << 24) + (1u << 20) + 1);
  for (std::uint32_t i = 0; i < (1u << 24); ++i) v.push_back(from_bits(i << 8));
  std::mt19937 gen(static_cast<std::uint32_t>(testing::test_seed()));
  for (std::uint32_t i = 0; i < (1u << 20); ++i) v.push_back(from_bits(gen()));
  v.push_back(from_bits(0x7fc00001u));
  return v;
}

// Every 16-bit pattern, then 3 more so the length is not a multiple of the vector width.
std::vector<std::uint16_t> all_16_bit_patterns() {
  std::vector<std::uint16_t> v;
  for (std::uint32_t i = 0; i < 65536u; ++i) v.push_back(static_cast<std::uint16_t>(i));
  for (std::uint16_t i : {0x7c01, 0xfe00, 0x3c00}) v.push_back(i);
  return v;
}

template <class Narrow, class Convert>
void expect_narrowing_matches(Convert convert, Narrow (*reference)(float), const char* what) {
  const std::vector<float> in = probe_floats();
  std::vector<Narrow> out(in.size());
  convert(out.data(), in.data(), static_cast<kernels::index_t>(in.size()));
  std::int64_t wrong = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const std::uint16_t want = reference(in[i]).bits;
    if (out[i].bits != want && wrong++ < 5) {
      ADD_FAILURE() << what << ": float bits 0x" << std::hex << bits(in[i]) << " gave 0x" << out[i].bits
                    << ", the reference 0x" << want;
    }
  }
  EXPECT_EQ(wrong, 0) << what;
}

template <class Narrow, class Convert>
void expect_widening_matches(Convert convert, float (*reference)(Narrow), const char* what) {
  const std::vector<std::uint16_t> patterns = all_16_bit_patterns();
  std::vector<Narrow> in(patterns.size());
  for (std::size_t i = 0; i < in.size(); ++i) in[i].bits = patterns[i];
  std::vector<float> out(in.size());
  convert(out.data(), in.data(), static_cast<kernels::index_t>(in.size()));
  std::int64_t wrong = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const std::uint32_t want = bits(reference(in[i]));
    if (bits(out[i]) != want && wrong++ < 5) {
      ADD_FAILURE() << what << ": 0x" << std::hex << in[i].bits << " gave float bits 0x" << bits(out[i])
                    << ", the reference 0x" << want;
    }
  }
  EXPECT_EQ(wrong, 0) << what;
}

TEST(Convert, Bf16MatchesTheReferenceBitForBit) {
  expect_narrowing_matches<BFloat16>(cpu::f32_to_bf16, kernels::float_to_bfloat16, "f32 -> bf16");
  expect_widening_matches<BFloat16>(cpu::bf16_to_f32, kernels::bfloat16_to_float, "bf16 -> f32");
}

TEST(Convert, F16MatchesTheReferenceOnEveryPath) {
  for (const cpu::HalfPath path : {cpu::HalfPath::kF16c, cpu::HalfPath::kPortable}) {
    const char* name = path == cpu::HalfPath::kF16c ? "F16C" : "portable";
    std::vector<Half> probe(1);
    const float one = 1.0f;
    if (!cpu::f32_to_f16_path(path, probe.data(), &one, 1)) {
      std::printf("  (%s path not available on this CPU or build)\n", name);
      continue;
    }
    SCOPED_TRACE(name);
    expect_narrowing_matches<Half>(
        [path](Half* o, const float* i, kernels::index_t n) { ASSERT_TRUE(cpu::f32_to_f16_path(path, o, i, n)); },
        kernels::float_to_half, "f32 -> f16");
    expect_widening_matches<Half>(
        [path](float* o, const Half* i, kernels::index_t n) { ASSERT_TRUE(cpu::f16_to_f32_path(path, o, i, n)); },
        kernels::half_to_float, "f16 -> f32");
  }
}

// The casts of tensors take these loops, split over threads, for every length.
TEST(Convert, TensorCastsUseThemAtEveryLength) {
  for (const std::int64_t n : {0, 1, 7, 8, 9, 100, 65536 * 2 + 5}) {
    const Tensor x = Tensor::from_vector(testing::random_vector(static_cast<std::size_t>(n), 7, -70000.0f, 70000.0f),
                                         {n});
    const std::vector<float> xs = x.to_vector<float>();
    const Tensor h = x.cast(DType::kF16), b = x.cast(DType::kBF16);
    const auto* hp = static_cast<const Half*>(h.raw());
    const auto* bp = static_cast<const BFloat16*>(b.raw());
    const std::vector<float> back_h = h.cast(DType::kF32).to_vector<float>();
    const std::vector<float> back_b = b.cast(DType::kF32).to_vector<float>();
    for (std::int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(i);
      ASSERT_EQ(hp[i].bits, kernels::float_to_half(xs[k]).bits) << "n " << n << ", element " << i;
      ASSERT_EQ(bp[i].bits, kernels::float_to_bfloat16(xs[k]).bits) << "n " << n << ", element " << i;
      ASSERT_EQ(bits(back_h[k]), bits(kernels::half_to_float(hp[i]))) << "n " << n << ", element " << i;
      ASSERT_EQ(bits(back_b[k]), bits(kernels::bfloat16_to_float(bp[i]))) << "n " << n << ", element " << i;
    }
  }
}

}  // namespace
}  // namespace gpudl
