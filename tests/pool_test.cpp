// Pooling on the CPU: hand-worked forward and backward values, the kernels' argmax, gradient
// checks for several geometries, output shapes and error messages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "gpudl/kernels/pool.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/sequential.h"
#include "gradcheck.h"

namespace gpudl {
namespace {

using testing::expect_gradients_match;
using testing::random_vector;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

Tensor image(const std::vector<float>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }

// Spacing of the distinct inputs for max-pool gradient checks: more than twice the finite
// difference step, so a perturbed element never changes which element wins a window.
constexpr float kDistinctSpacing = 0.1f;

// A random permutation of evenly spaced values, so no window ties and no difference step
// crosses a kink of the max.
Tensor distinct_input(const Shape& shape, std::uint64_t salt) {
  const auto n = static_cast<std::size_t>(shape.numel());
  const auto keys = random_vector(n, salt);
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return keys[a] < keys[b]; });
  std::vector<float> values(n);
  for (std::size_t rank = 0; rank < n; ++rank) {
    values[order[rank]] = (static_cast<float>(rank) - static_cast<float>(n) / 2.0f) * kDistinctSpacing;
  }
  return Tensor::from_vector(values, shape);
}

kernels::PoolGeometry geometry(std::int64_t h, std::int64_t w, std::int64_t kernel, std::int64_t stride,
                               std::int64_t pad) {
  return {.n = 1, .c = 1, .h = h, .w = w, .kernel_h = kernel, .kernel_w = kernel,
          .stride_h = stride, .stride_w = stride, .pad_h = pad, .pad_w = pad};
}

// The CPU kernel's outputs for one (1, 1, h, w) plane.
struct MaxResult {
  std::vector<float> y;
  std::vector<std::int32_t> argmax;
};
MaxResult cpu_max_pool(const std::vector<float>& x, const kernels::PoolGeometry& g) {
  const auto outputs = static_cast<std::size_t>(g.out_h() * g.out_w());
  MaxResult r{std::vector<float>(outputs), std::vector<std::int32_t>(outputs)};
  kernels::cpu::max_pool_forward(r.y.data(), r.argmax.data(), x.data(), DType::kF32, g, kernels::Exec{});
  return r;
}

void expect_message(const std::function<void()>& fn, const std::string& message) {
  try {
    fn();
    FAIL() << "expected ShapeError: " << message;
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()), message);
  }
}

// ---------------------------------------------------------------------------------------------
// max pooling

TEST(MaxPool, NonOverlappingWindowsAndBackwardRouting) {
  MaxPool2d pool(2);
  const Tensor x = image({1, 2, 5, 3,  //
                          4, 0, 6, 8,  //
                          9, 7, -1, -2,  //
                          3, 10, -3, -4},
                         {1, 1, 4, 4});
  const Tensor y = pool.forward(x);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{4, 8, 10, -1}));
  const Tensor dx = pool.backward(image({1, 2, 3, 4}, {1, 1, 2, 2}));
  EXPECT_EQ(dx.to_vector<float>(), (std::vector<float>{0, 0, 0, 0,  //
                                                      1, 0, 0, 2,  //
                                                      0, 0, 4, 0,  //
                                                      0, 3, 0, 0}));
}

TEST(MaxPool, PaddingNeverWins) {
  // All inputs negative: a zero from the padding would beat them if it took part.
  std::vector<float> v(16);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = -static_cast<float>(i + 1);
  const auto r = cpu_max_pool(v, geometry(4, 4, 3, 2, 1));
  EXPECT_EQ(r.y, (std::vector<float>{-1, -2, -5, -6}));
  EXPECT_EQ(r.argmax, (std::vector<std::int32_t>{0, 1, 4, 5}));
  MaxPool2d pool(3, 2, 1);
  EXPECT_EQ(pool.forward(image(v, {1, 1, 4, 4})).to_vector<float>(), r.y);
}

TEST(MaxPool, OverlappingWindowsSumIntoASharedWinner) {
  MaxPool2d pool(3, 1);
  const Tensor x = image({0, 1, 2, 3,  //
                          4, 9, 5, 6,  //
                          7, 8, 1, 2},
                         {1, 1, 3, 4});
  EXPECT_EQ(pool.forward(x).to_vector<float>(), (std::vector<float>{9, 9}));
  const auto dx = pool.backward(image({1.5f, 2.5f}, {1, 1, 1, 2})).to_vector<float>();
  EXPECT_EQ(dx, (std::vector<float>{0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0}));
}

TEST(MaxPool, StrideLargerThanKernelSkipsInputs) {
  std::vector<float> v(25);
  std::iota(v.begin(), v.end(), 0.0f);
  const auto r = cpu_max_pool(v, geometry(5, 5, 2, 3, 0));
  EXPECT_EQ(r.y, (std::vector<float>{6, 9, 21, 24}));
  EXPECT_EQ(r.argmax, (std::vector<std::int32_t>{6, 9, 21, 24}));
  MaxPool2d pool(2, 3);
  pool.forward(image(v, {1, 1, 5, 5}));
  const auto dx = pool.backward(image({1, 2, 3, 4}, {1, 1, 2, 2})).to_vector<float>();
  for (std::size_t i = 0; i < dx.size(); ++i) {
    const float expected = i == 6 ? 1.0f : i == 9 ? 2.0f : i == 21 ? 3.0f : i == 24 ? 4.0f : 0.0f;
    EXPECT_EQ(dx[i], expected) << "element " << i;
  }
}

TEST(MaxPool, NaNWinsItsWindow) {
  const std::vector<float> v{1, kNaN, 3, 4, kNaN, 9,  //
                             5, 2, kNaN, kNaN, 8, 7};
  const auto r = cpu_max_pool(v, geometry(2, 6, 2, 2, 0));
  ASSERT_EQ(r.y.size(), 3u);
  for (float y : r.y) EXPECT_TRUE(std::isnan(y));
  // The first NaN in row-major window order, whether it comes first or after a number.
  EXPECT_EQ(r.argmax, (std::vector<std::int32_t>{1, 8, 4}));
  MaxPool2d pool(2);
  pool.forward(image(v, {1, 1, 2, 6}));
  const auto dx = pool.backward(image({1, 2, 3}, {1, 1, 1, 3})).to_vector<float>();
  EXPECT_EQ(dx, (std::vector<float>{0, 1, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0}));
}

TEST(MaxPool, TiesGoToTheFirstElementInRowMajorOrder) {
  const std::vector<float> v{5, 5, 1, 7, -kInf, -kInf,  //
                             5, 5, 7, 7, -kInf, -kInf};
  const auto r = cpu_max_pool(v, geometry(2, 6, 2, 2, 0));
  EXPECT_EQ(r.y, (std::vector<float>{5, 7, -kInf}));
  EXPECT_EQ(r.argmax, (std::vector<std::int32_t>{0, 3, 4}));
}

TEST(MaxPool, PlanesAreIndependent) {
  // Two samples of two channels: each argmax is within its own plane.
  MaxPool2d pool(2);
  std::vector<float> v(16);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 7) % 16);
  const Tensor y = pool.forward(image(v, {2, 2, 2, 2}));
  EXPECT_EQ(y.shape(), (Shape{2, 2, 1, 1}));
  // Planes {0,7,14,5}, {12,3,10,1}, {8,15,6,13}, {4,11,2,9}.
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{14, 12, 15, 11}));
  const auto dx = pool.backward(image({1, 2, 3, 4}, {2, 2, 1, 1})).to_vector<float>();
  EXPECT_EQ(dx, (std::vector<float>{0, 0, 1, 0, 2, 0, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0}));
}

// ---------------------------------------------------------------------------------------------
// average pooling

TEST(AvgPool, CountsPaddingInTheDivisor) {
  std::vector<float> v(16);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = -static_cast<float>(i + 1);
  AvgPool2d pool(3, 2, 1);
  const auto y = pool.forward(image(v, {1, 1, 4, 4})).to_vector<float>();
  // Every window divides by 9, the corner ones too (count_include_pad = true).
  EXPECT_EQ(y, (std::vector<float>{-14.0f / 9.0f, -30.0f / 9.0f, -57.0f / 9.0f, -99.0f / 9.0f}));
  const auto dx = pool.backward(image({9, 18, 27, 36}, {1, 1, 2, 2})).to_vector<float>();
  EXPECT_EQ(dx, (std::vector<float>{1, 3, 2, 2,  //
                                    4, 10, 6, 6,  //
                                    3, 7, 4, 4,  //
                                    3, 7, 4, 4}));
}

TEST(AvgPool, NonOverlappingWindows) {
  AvgPool2d pool(2);
  const Tensor x = image({1, 2, 5, 3,  //
                          4, 1, 6, 8,  //
                          9, 7, -1, -2,  //
                          3, 5, -3, -4},
                         {1, 1, 4, 4});
  EXPECT_EQ(pool.forward(x).to_vector<float>(), (std::vector<float>{2, 5.5f, 6, -2.5f}));
  const auto dx = pool.backward(image({4, 8, -4, 2}, {1, 1, 2, 2})).to_vector<float>();
  EXPECT_EQ(dx, (std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, -1, -1, 0.5f, 0.5f, -1, -1, 0.5f, 0.5f}));
}

TEST(GlobalAvgPool, MeansEachPlaneAndSpreadsTheGradient) {
  GlobalAvgPool pool;
  const Tensor x = image({1, 2, 3, 6,  //
                          -1, -1, -1, -1,  //
                          0, 0, 0, 8},
                         {1, 3, 2, 2});
  const Tensor y = pool.forward(x);
  EXPECT_EQ(y.shape(), (Shape{1, 3}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{3, -1, 2}));
  const auto dx = pool.backward(image({4, -8, 1}, {1, 3})).to_vector<float>();
  EXPECT_EQ(dx, (std::vector<float>{1, 1, 1, 1, -2, -2, -2, -2, 0.25f, 0.25f, 0.25f, 0.25f}));
}

// ---------------------------------------------------------------------------------------------
// gradient checks

// The single-layer gradient checks (every MaxPool2d/AvgPool2d geometry, GlobalAvgPool) are cases
// of the op table (tests/cases/op_cases.cpp, run by tests/op_table_test.cpp).
TEST(GradCheck, APoolingNetwork) {
  Sequential net{MaxPool2d(2), AvgPool2d(2, 1), GlobalAvgPool(), Linear(3, 2)};
  expect_gradients_match(net, distinct_input({2, 3, 6, 6}, 121), 122);
}

// ---------------------------------------------------------------------------------------------
// shapes, descriptions and errors

TEST(Pool2d, DescribesItselfAndReportsItsWindow) {
  EXPECT_EQ(MaxPool2d(2).describe(), "MaxPool2d(2, stride=2)");
  EXPECT_EQ(MaxPool2d(3, 2, 1).describe(), "MaxPool2d(3, stride=2, padding=1)");
  EXPECT_EQ(AvgPool2d(2, 1).describe(), "AvgPool2d(2, stride=1)");
  const MaxPool2d pool(3, 2, 1);
  EXPECT_EQ(pool.kernel_extent(), 3);
  EXPECT_EQ(pool.stride(), 2);
  EXPECT_EQ(pool.padding(), 1);
  EXPECT_EQ(AvgPool2d(4).stride(), 4);
}

TEST(Pool2d, OutputShapesInFloorMode) {
  EXPECT_EQ(MaxPool2d(2).output_shape({64, 32, 32}), (Shape{64, 16, 16}));
  EXPECT_EQ(MaxPool2d(2).output_shape({6, 27, 27}), (Shape{6, 13, 13}));  // the last row is dropped
  EXPECT_EQ(MaxPool2d(3, 2, 1).output_shape({3, 33, 31}), (Shape{3, 17, 16}));
  EXPECT_EQ(AvgPool2d(3, 1, 1).output_shape({5, 7, 9}), (Shape{5, 7, 9}));
  EXPECT_EQ(AvgPool2d(2, 1, 1).output_shape({5, 1, 1}), (Shape{5, 2, 2}));
  EXPECT_EQ(GlobalAvgPool().output_shape({512, 4, 4}), (Shape{512}));
  const Sequential net{MaxPool2d(2), AvgPool2d(3, 1, 1), GlobalAvgPool()};
  EXPECT_EQ(net.output_shape({3, 32, 32}), (Shape{3}));
}

TEST(Pool2d, FlopsCountOneOperationPerWindowElement) {
  EXPECT_EQ(MaxPool2d(2).flops({3, 4, 4}), 3 * 2 * 2 * 4);
  EXPECT_EQ(AvgPool2d(3, 2, 1).flops({2, 5, 5}), 2 * 3 * 3 * 9);
  EXPECT_EQ(GlobalAvgPool().flops({3, 4, 4}), 48);
}

TEST(Pool2d, ShapeErrorsNameTheLayerAndTheShape) {
  MaxPool2d pool(2);
  expect_message([&] { pool.forward(Tensor::zeros({8, 10})); },
                 "MaxPool2d(2, stride=2): expected input (N, C, H, W), got [8, 10]");
  expect_message([&] { pool.forward(Tensor::zeros({2, 3, 1, 5})); },
                 "MaxPool2d(2, stride=2): the 2x2 window does not fit input [2, 3, 1, 5]");
  expect_message([&] { pool.output_shape({3, 5, 1}); },
                 "MaxPool2d(2, stride=2): the 2x2 window does not fit input [3, 5, 1]");
  expect_message([&] { AvgPool2d(3, 1, 1).output_shape({10}); },
                 "AvgPool2d(3, stride=1, padding=1): expected input (C, H, W), got [10]");
  expect_message([&] { GlobalAvgPool().forward(Tensor::zeros({4, 512})); },
                 "GlobalAvgPool: expected input (N, C, H, W) with H, W >= 1, got [4, 512]");
  expect_message([&] { GlobalAvgPool().output_shape({3, 0, 4}); },
                 "GlobalAvgPool: expected input (C, H, W) with H, W >= 1, got [3, 0, 4]");
  // Padding alone would fit the window; an empty plane has nothing to pool.
  EXPECT_THROW(MaxPool2d(2, 2, 1).forward(Tensor::zeros({1, 1, 0, 4})), ShapeError);
  EXPECT_THROW(pool.forward(Tensor::zeros({1, 1, 2, 2}, DType::kI32)), ValueError);
}

TEST(Pool2d, BadOptionsThrowValueError) {
  EXPECT_THROW(MaxPool2d(0), ValueError);
  EXPECT_THROW(MaxPool2d(2, 0), ValueError);
  EXPECT_THROW(AvgPool2d(2, 2, -1), ValueError);
  EXPECT_THROW(AvgPool2d(1, 1, 1), ValueError);
  try {
    MaxPool2d(3, 1, 2);
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(),
                 "MaxPool2d(3, stride=1, padding=2): need kernel >= 1, stride >= 1 and 0 <= padding <= kernel / 2");
  }
}

TEST(Pool2d, BackwardNeedsItsForwardAndAMatchingGradient) {
  MaxPool2d max_pool(2);
  EXPECT_THROW(max_pool.backward(Tensor::zeros({1, 1, 1, 1})), Error);
  max_pool.forward(Tensor::zeros({1, 2, 4, 4}));
  expect_message([&] { max_pool.backward(Tensor::zeros({1, 2, 4, 4})); },
                 "MaxPool2d(2, stride=2): gradient [1, 2, 4, 4] does not match output [1, 2, 2, 2]");
  max_pool.backward(Tensor::zeros({1, 2, 2, 2}));
  EXPECT_THROW(max_pool.backward(Tensor::zeros({1, 2, 2, 2})), Error);  // the forward was consumed
  AvgPool2d avg_pool(2);
  EXPECT_THROW(avg_pool.backward(Tensor::zeros({1, 1, 1, 1})), Error);
  GlobalAvgPool global;
  EXPECT_THROW(global.backward(Tensor::zeros({1, 2})), Error);
  global.forward(Tensor::zeros({1, 2, 3, 3}));
  expect_message([&] { global.backward(Tensor::zeros({2, 1})); },
                 "GlobalAvgPool: gradient [2, 1] does not match output [1, 2]");
}

TEST(PoolKernels, GeometryValidity) {
  EXPECT_TRUE(geometry(4, 4, 3, 2, 1).valid());
  EXPECT_FALSE(geometry(4, 4, 3, 2, 2).valid());  // more than half the kernel
  EXPECT_FALSE(geometry(1, 4, 3, 1, 0).valid());  // window taller than the input
  EXPECT_TRUE(geometry(1, 4, 3, 1, 1).valid());   // fits once padded
  EXPECT_FALSE(geometry(0, 4, 2, 1, 1).valid());  // padding around nothing
  EXPECT_EQ(geometry(33, 31, 3, 2, 1).out_h(), 17);
  EXPECT_EQ(geometry(33, 31, 3, 2, 1).out_w(), 16);
}

TEST(PoolKernels, GlobalAveragePoolKernels) {
  const std::vector<float> x{1, 2, 3, 4, 5, 6};
  std::vector<float> y(2), dx(6);
  kernels::cpu::global_avg_pool_forward(y.data(), x.data(), DType::kF32, 1, 2, 3, kernels::Exec{});
  EXPECT_EQ(y, (std::vector<float>{2, 5}));
  const std::vector<float> dy{3, -6};
  kernels::cpu::global_avg_pool_backward(dx.data(), dy.data(), DType::kF32, 1, 2, 3, kernels::Exec{});
  EXPECT_EQ(dx, (std::vector<float>{1, 1, 1, -2, -2, -2}));
}

}  // namespace
}  // namespace gpudl
