// Axis reductions and element-wise kernels on the CPU against direct loops.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "test_util.h"

namespace gpudl {
namespace {

using testing::random_vector;
using testing::relative_error;

// Sums accumulate in double on the CPU; float storage of the result is the only rounding.
constexpr double kReduceTolerance = 1e-6;

// Reference: reduce (outer, len, inner) over the middle axis.
std::vector<double> reference(const std::vector<float>& x, std::int64_t outer, std::int64_t len, std::int64_t inner,
                              int what) {
  std::vector<double> out;
  for (std::int64_t o = 0; o < outer; ++o) {
    for (std::int64_t i = 0; i < inner; ++i) {
      double sum = 0, best = -INFINITY;
      std::int64_t arg = 0;
      for (std::int64_t a = 0; a < len; ++a) {
        const double v = x[static_cast<std::size_t>((o * len + a) * inner + i)];
        sum += v;
        if (v > best) best = v, arg = a;
      }
      out.push_back(what == 0 ? sum : what == 1 ? sum / len : what == 2 ? best : static_cast<double>(arg));
    }
  }
  return out;
}

TEST(Reduce, EveryAxisOfA3DTensor) {
  const std::vector<std::int64_t> dims{5, 7, 3};
  const auto x = random_vector(105, 11);
  Tensor t = Tensor::from_vector(x, Shape(dims));
  for (int axis = 0; axis < 3; ++axis) {
    std::int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; ++i) outer *= dims[i];
    for (int i = axis + 1; i < 3; ++i) inner *= dims[i];
    const std::int64_t len = dims[static_cast<std::size_t>(axis)];
    const Tensor results[] = {ops::sum(t, axis), ops::mean(t, axis), ops::max(t, axis)};
    for (int what = 0; what < 3; ++what) {
      const auto expected = reference(x, outer, len, inner, what);
      const auto got = results[what].to_vector<float>();
      ASSERT_EQ(got.size(), expected.size());
      EXPECT_LT(relative_error(got, std::vector<float>(expected.begin(), expected.end())), kReduceTolerance)
          << "axis " << axis << " op " << what;
    }
    const auto arg = ops::argmax(t, axis).to_vector<std::int64_t>();
    const auto expected = reference(x, outer, len, inner, 3);
    for (std::size_t i = 0; i < arg.size(); ++i) EXPECT_EQ(arg[i], static_cast<std::int64_t>(expected[i]));
  }
  EXPECT_EQ(ops::sum(t, -1).shape(), (Shape{5, 7}));
  EXPECT_EQ(ops::argmax(t, 1).dtype(), DType::kI64);
}

TEST(Reduce, ArgmaxTakesTheFirstOfTiesAndNaNPropagates) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor t = Tensor::from_vector(std::vector<float>{1, 3, 3, 0, 2, nan, 5, nan}, {2, 4});
  EXPECT_EQ(ops::argmax(t, 1).to_vector<std::int64_t>(), (std::vector<std::int64_t>{1, 1}));
  const auto m = ops::max(t, 1).to_vector<float>();
  EXPECT_EQ(m[0], 3.0f);
  EXPECT_TRUE(std::isnan(m[1]));
}

TEST(Reduce, RejectsBadAxesAndEmptyAxes) {
  Tensor t = Tensor::zeros({2, 3});
  try {
    ops::sum(t, 2);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "sum: axis 2 is out of range for [2, 3]");
  }
  EXPECT_THROW(ops::mean(t, -3), ShapeError);
  EXPECT_THROW(ops::max(Tensor::zeros({2, 0}), 1), ShapeError);
  EXPECT_EQ(ops::sum(Tensor::zeros({0, 3}), 1).numel(), 0);
}

TEST(Elementwise, ArithmeticMatchesDirectLoops) {
  const auto av = random_vector(1000, 12), bv = random_vector(1000, 13, 0.5f, 2.0f);
  Tensor a = Tensor::from_vector(av, {10, 100}), b = Tensor::from_vector(bv, {10, 100});
  const auto add = ops::add(a, b).to_vector<float>(), sub = ops::sub(a, b).to_vector<float>();
  const auto mul = ops::mul(a, b).to_vector<float>(), div = ops::div(a, b).to_vector<float>();
  for (std::size_t i = 0; i < av.size(); ++i) {
    EXPECT_EQ(add[i], av[i] + bv[i]);
    EXPECT_EQ(sub[i], av[i] - bv[i]);
    EXPECT_EQ(mul[i], av[i] * bv[i]);
    EXPECT_EQ(div[i], av[i] / bv[i]);
  }
  Tensor y = b.clone();
  ops::axpy(y, -2.0f, a);
  Tensor s = Tensor::empty({10, 100});
  ops::scale(s, a, 0.25f);
  const auto yv = y.to_vector<float>(), sv = s.to_vector<float>();
  for (std::size_t i = 0; i < av.size(); ++i) {
    EXPECT_EQ(yv[i], bv[i] + -2.0f * av[i]);
    EXPECT_EQ(sv[i], 0.25f * av[i]);
  }
  ops::add(a, a, b);  // in place
  EXPECT_EQ(a.to_vector<float>(), add);
}

TEST(Elementwise, MismatchesNameTheOperationAndBothShapes) {
  try {
    ops::add(Tensor::zeros({2, 3}), Tensor::zeros({3, 2}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "add: shapes [2, 3] and [3, 2] differ");
  }
  try {
    ops::mul(Tensor::zeros({2}), Tensor::zeros({2}, DType::kI32));
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "mul: b has dtype i32, expected f32, bf16 or f16");
  }
  EXPECT_THROW(ops::axpy(Tensor::zeros({2}), 1.0f, Tensor::zeros({3})), ShapeError);
  EXPECT_THROW(ops::copy(Tensor::zeros({2}), Tensor::zeros({2}, DType::kI32)), ValueError);
}

// bf16/f16 operands are computed in FP32 and the result rounded once, whatever the mix of types.
TEST(Elementwise, LowPrecisionOperandsComputeInF32AndRoundOnce) {
  const std::vector<float> av = {1.0f, 1.0f / 3.0f, -2.5f, 1000.1f}, bv = {1e-3f, 2.0f / 3.0f, 0.75f, -0.2f};
  const Tensor a = Tensor::from_vector(av, {4}), b = Tensor::from_vector(bv, {4});
  const auto values = [](const Tensor& t) { return t.cast(DType::kF32).to_vector<float>(); };
  for (DType low : {DType::kBF16, DType::kF16}) {
    const auto rounded = [&](const std::vector<float>& v) { return values(Tensor::from_vector(v, {4}).cast(low)); };
    const Tensor al = a.cast(low), bl = b.cast(low);
    const std::vector<float> aw = values(al), bw = values(bl);
    std::vector<float> product(4), sum(4);
    for (std::size_t i = 0; i < 4; ++i) {
      product[i] = aw[i] * bv[i];
      sum[i] = aw[i] + bw[i];
    }
    // low x f32 -> low: the product of the stored values, rounded once.
    const Tensor mixed = ops::mul(al, b);
    ASSERT_EQ(mixed.dtype(), low);
    EXPECT_EQ(values(mixed), rounded(product));
    // low + low in place.
    ops::add(al, al, bl);
    EXPECT_EQ(values(al), rounded(sum));
  }
}

TEST(Errors, ApiFailuresNameTheCallStatusAndPlace) {
  try {
    detail::throw_api_error("cuBLAS", "cublasSgemm(h, ...)", "CUBLAS_STATUS_INVALID_VALUE (an invalid value)",
                            "kernels/cuda/gemm.cu", 42);
    FAIL() << "expected CudaError";
  } catch (const CudaError& e) {
    EXPECT_STREQ(e.what(),
                 "cuBLAS call `cublasSgemm(h, ...)` failed: CUBLAS_STATUS_INVALID_VALUE (an invalid value) at "
                 "kernels/cuda/gemm.cu:42");
  }
  // Every libgpudl exception is a gpudl::Error, so callers can catch them all at once.
  EXPECT_THROW(throw OutOfMemoryError("x"), Error);
  EXPECT_THROW(throw ShapeError("x"), Error);
  EXPECT_THROW(throw DeviceError("x"), Error);
}

}  // namespace
}  // namespace gpudl
