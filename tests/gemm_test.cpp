// CPU GEMM (OpenBLAS) against a double-precision loop: odd shapes, all transposes, strides.
#include <gtest/gtest.h>

#include <limits>
#include <tuple>

#include "gpudl/kernels/gemm.h"
#include "test_util.h"

namespace gpudl {
namespace {

using kernels::Transpose;
using testing::naive_gemm;
using testing::random_vector;
using testing::relative_error;

// float accumulation over k terms of |x| < 1 drifts by ~sqrt(k) * 2^-24 relative; 1e-5
// covers k up to a few thousand with margin, and a wrong index gives errors near 1.
constexpr double kGemmTolerance = 1e-5;

struct GemmShape {
  std::int64_t m, n, k;
};
void PrintTo(const GemmShape& s, std::ostream* os) { *os << s.m << "x" << s.n << "x" << s.k; }

class GemmAllTransposes : public ::testing::TestWithParam<std::tuple<GemmShape, bool, bool>> {};

TEST_P(GemmAllTransposes, MatchesTheDoubleLoop) {
  const auto [shape, ta, tb] = GetParam();
  const auto [m, n, k] = shape;
  // Leading dimensions larger than the matrices, to catch a stride mistaken for a width.
  const std::int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
  const std::int64_t a_rows = ta ? k : m, b_rows = tb ? n : k;
  auto a = random_vector(static_cast<std::size_t>(a_rows * lda), 1);
  auto b = random_vector(static_cast<std::size_t>(b_rows * ldb), 2);
  auto c = random_vector(static_cast<std::size_t>(m * ldc), 3);
  auto expected = c;
  naive_gemm(ta, tb, m, n, k, 0.75, a, lda, b, ldb, -0.5, expected, ldc);
  kernels::cpu::gemm(ta ? Transpose::kYes : Transpose::kNo, tb ? Transpose::kYes : Transpose::kNo, m, n, k, 0.75f,
                     a.data(), lda, b.data(), ldb, -0.5f, c.data(), ldc, {});
  EXPECT_LT(relative_error(c, expected), kGemmTolerance);
  // Padding columns of C are untouched.
  const auto original = random_vector(static_cast<std::size_t>(m * ldc), 3);
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = n; j < ldc; ++j) EXPECT_EQ(c[i * ldc + j], original[i * ldc + j]);
  }
}

std::string gemm_case_name(const ::testing::TestParamInfo<std::tuple<GemmShape, bool, bool>>& info) {
  const GemmShape& s = std::get<0>(info.param);
  return std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k) +
         (std::get<1>(info.param) ? "_T" : "_N") + (std::get<2>(info.param) ? "T" : "N");
}

INSTANTIATE_TEST_SUITE_P(OddShapes, GemmAllTransposes,
                         ::testing::Combine(::testing::Values(GemmShape{1, 1, 1}, GemmShape{7, 5, 3},
                                                              GemmShape{33, 17, 65}, GemmShape{128, 1, 64},
                                                              GemmShape{1, 100, 257}, GemmShape{63, 127, 129}),
                                            ::testing::Bool(), ::testing::Bool()),
                         gemm_case_name);

TEST(Gemm, BetaZeroIgnoresNaNInTheOutput) {
  auto a = random_vector(6, 4), b = random_vector(6, 5);
  std::vector<float> c(4, std::numeric_limits<float>::quiet_NaN());
  kernels::cpu::gemm(Transpose::kNo, Transpose::kNo, 2, 2, 3, 1.0f, a.data(), 3, b.data(), 2, 0.0f, c.data(), 2, {});
  std::vector<float> expected(4, 0.0f);
  naive_gemm(false, false, 2, 2, 3, 1.0, a, 3, b, 2, 0.0, expected, 2);
  EXPECT_LT(relative_error(c, expected), kGemmTolerance);
}

TEST(Gemm, EmptyInnerDimensionScalesC) {
  std::vector<float> c{1, 2, 3, 4};
  kernels::cpu::gemm(Transpose::kNo, Transpose::kNo, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 3.0f, c.data(), 2, {});
  EXPECT_EQ(c, (std::vector<float>{3, 6, 9, 12}));
  std::vector<float> d(4, std::numeric_limits<float>::quiet_NaN());
  kernels::cpu::gemm(Transpose::kNo, Transpose::kNo, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, d.data(), 2, {});
  EXPECT_EQ(d, (std::vector<float>{0, 0, 0, 0}));
}

TEST(Gemm, StridedBatchedMatchesPerMatrixLoops) {
  const std::int64_t batch = 5, m = 9, n = 7, k = 11;
  auto a = random_vector(static_cast<std::size_t>(batch * k * m), 6);  // stored transposed: (batch, k, m)
  auto b = random_vector(static_cast<std::size_t>(batch * k * n), 7);
  std::vector<float> c(static_cast<std::size_t>(batch * m * n), std::numeric_limits<float>::quiet_NaN());
  kernels::cpu::gemm_strided_batched(Transpose::kYes, Transpose::kNo, m, n, k, 1.0f, a.data(), m, k * m, b.data(), n,
                                     k * n, 0.0f, c.data(), n, m * n, batch, {});
  for (std::int64_t i = 0; i < batch; ++i) {
    std::vector<float> ai(a.begin() + i * k * m, a.begin() + (i + 1) * k * m);
    std::vector<float> bi(b.begin() + i * k * n, b.begin() + (i + 1) * k * n);
    std::vector<float> expected(static_cast<std::size_t>(m * n));
    naive_gemm(true, false, m, n, k, 1.0, ai, m, bi, n, 0.0, expected, n);
    std::vector<float> ci(c.begin() + i * m * n, c.begin() + (i + 1) * m * n);
    EXPECT_LT(relative_error(ci, expected), kGemmTolerance) << "matrix " << i;
  }
}

TEST(Matmul, TensorFacadeComputesProductsAndChecksShapes) {
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<float>{1, 0, 0, 1, 1, 1}, {3, 2});
  EXPECT_EQ(ops::matmul(a, b).to_vector<float>(), (std::vector<float>{4, 5, 10, 11}));
  // a^T a: (3, 2) x (2, 3)
  EXPECT_EQ(ops::matmul(a, a, {.transpose_a = true}).to_vector<float>(),
            (std::vector<float>{17, 22, 27, 22, 29, 36, 27, 36, 45}));
  Tensor out = Tensor::full({2, 2}, 1.0);
  ops::matmul(out, a, b, {.alpha = 2.0f, .beta = 1.0f});
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{9, 11, 21, 23}));
  try {
    ops::matmul(a, a);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "matmul: a [2, 3] times b [2, 3] does not give out [2, 3]");
  }
  EXPECT_THROW(ops::matmul(Tensor::zeros({2}), Tensor::zeros({2})), ShapeError);
  EXPECT_THROW(ops::matmul(a, Tensor::zeros({3, 2}, DType::kI32)), ValueError);
}

// The Linear forward in one call is, on the CPU, the product and then the bias, to the bit.
TEST(Matmul, LinearIsTheProductThenTheBias) {
  const Tensor x = Tensor::from_vector(random_vector(33 * 17, 30), {33, 17});
  const Tensor w = Tensor::from_vector(random_vector(65 * 17, 31), {65, 17});
  const Tensor bias = Tensor::from_vector(random_vector(65, 32), {65});
  Tensor want = ops::matmul(x, w, {.transpose_b = true});
  nn::add_bias(want, bias);
  Tensor got = Tensor::full({33, 65}, std::numeric_limits<float>::quiet_NaN());  // not read
  ops::linear(got, x, w, bias);
  EXPECT_EQ(got.to_vector<float>(), want.to_vector<float>());
  try {
    ops::linear(got, x, w, Tensor::zeros({64}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "linear: a [33, 17] times b [65, 17]^T plus bias [64] does not give out [33, 65]");
  }
  EXPECT_THROW(ops::linear(got, x.cast(DType::kBF16), w, bias), ValueError);
}

TEST(Matmul, BatchedTensorsMultiplyMatrixByMatrix) {
  auto av = random_vector(2 * 3 * 4, 8), bv = random_vector(2 * 4 * 5, 9);
  Tensor a = Tensor::from_vector(av, {2, 3, 4}), b = Tensor::from_vector(bv, {2, 4, 5});
  Tensor c = ops::matmul(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 5}));
  for (std::int64_t i = 0; i < 2; ++i) {
    Tensor ci = ops::matmul(a[i], b[i]);
    EXPECT_LT(relative_error(c[i].to_vector<float>(), ci.to_vector<float>()), kGemmTolerance);
  }
}

}  // namespace
}  // namespace gpudl
