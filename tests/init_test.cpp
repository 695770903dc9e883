// Initialisers: each scheme's bound or spread, seeding, and argument checks.
#include <gtest/gtest.h>

#include <cmath>

#include "gpudl/core/runtime/init.h"
#include "test_util.h"

namespace gpudl {
namespace {

// Largest |value| and the standard deviation of a freshly initialised (fan_out, fan_in) matrix.
std::pair<double, double> spread(init::Scheme scheme, std::int64_t fan_in, std::int64_t fan_out) {
  Tensor t = Tensor::empty({fan_out, fan_in});
  Generator gen(testing::test_seed());
  init::fill(t, scheme, fan_in, fan_out, gen);
  double max = 0, sq = 0;
  const auto v = t.to_vector<float>();
  for (float x : v) {
    max = std::max(max, static_cast<double>(std::abs(x)));
    sq += static_cast<double>(x) * x;
  }
  return {max, std::sqrt(sq / static_cast<double>(v.size()))};
}

TEST(Init, UniformSchemesStayWithinTheirBounds) {
  const std::int64_t in = 300, out = 100;
  // Bounds: default 1/sqrt(in); Xavier sqrt(6/(in+out)); Kaiming sqrt(6/in); LeCun sqrt(3/in).
  const std::pair<init::Scheme, double> cases[] = {{init::Scheme::kDefault, 1.0 / std::sqrt(300.0)},
                                                   {init::Scheme::kXavierUniform, std::sqrt(6.0 / 400.0)},
                                                   {init::Scheme::kKaimingUniform, std::sqrt(6.0 / 300.0)},
                                                   {init::Scheme::kLecunUniform, std::sqrt(3.0 / 300.0)}};
  for (auto [scheme, bound] : cases) {
    const auto [max, sd] = spread(scheme, in, out);
    EXPECT_LE(max, bound);
    EXPECT_GT(max, 0.99 * bound);                      // 30000 draws reach the edge
    EXPECT_NEAR(sd, bound / std::sqrt(3.0), 0.01 * bound);  // U(-a, a) has sd a/sqrt(3)
  }
}

TEST(Init, NormalSchemesHaveTheirStandardDeviation) {
  const std::int64_t in = 300, out = 100;
  const std::pair<init::Scheme, double> cases[] = {{init::Scheme::kXavierNormal, std::sqrt(2.0 / 400.0)},
                                                   {init::Scheme::kKaimingNormal, std::sqrt(2.0 / 300.0)},
                                                   {init::Scheme::kLecunNormal, std::sqrt(1.0 / 300.0)}};
  for (auto [scheme, sd_expected] : cases) {
    // 30000 samples: the sample sd is within 1% of the true one with overwhelming probability.
    EXPECT_NEAR(spread(scheme, in, out).second, sd_expected, 0.015 * sd_expected);
  }
}

TEST(Init, SameSeedSameWeightsAndNamesParse) {
  Tensor a = Tensor::empty({5, 4}), b = Tensor::empty({5, 4});
  Generator g1(9), g2(9);
  init::fill(a, init::Scheme::kKaimingNormal, 4, 5, g1);
  init::fill(b, init::Scheme::kKaimingNormal, 4, 5, g2);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_EQ(init::parse("xavier_uniform"), init::Scheme::kXavierUniform);
  EXPECT_THROW(init::parse("glorot"), ValueError);
  EXPECT_THROW(init::fill(a, init::Scheme::kDefault, 0, 5, g1), ValueError);
}

}  // namespace
}  // namespace gpudl
