// Conv2d on the CPU: the kernels against a direct convolution in double, shapes, options and
// error messages (the layer's gradient checks are cases of the op table, tests/op_table_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gpudl/kernels/conv.h"
#include "gpudl/layers/conv.h"
#include "gradcheck.h"

namespace gpudl {
namespace {

using kernels::ConvGeometry;
using kernels::ConvOptions;
using kernels::index_t;
using testing::expect_gradients_match;
using testing::random_vector;

// im2col + float GEMM against the direct loops in double: each output sums at most a few
// thousand float products, which costs ~sqrt(terms) ulp ≈ 1e-6 relative; a wrong index or a
// missed tap is off by O(1).
constexpr double kConvTolerance = 1e-5;

struct ConvCase {
  std::string name;
  ConvGeometry g;
};

void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

// Geometry with square strides, paddings and dilations.
ConvGeometry geo(index_t n, index_t c, index_t h, index_t w, index_t k, index_t r, index_t s, index_t stride,
                 index_t pad, index_t dilation, index_t groups) {
  return {n, c, h, w, k, r, s, stride, stride, pad, pad, dilation, dilation, groups};
}

std::vector<ConvCase> conv_cases() {
  return {
      {"basic_3x3_pad1", geo(2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1)},
      {"stride2_pad0", geo(2, 4, 9, 8, 6, 3, 3, 2, 0, 1, 1)},
      {"stride2_pad2_5x5", geo(3, 2, 8, 10, 3, 5, 5, 2, 2, 1, 1)},
      {"dilation2_pad2", geo(2, 3, 9, 9, 4, 3, 3, 1, 2, 2, 1)},
      {"groups2", geo(2, 4, 6, 7, 6, 3, 3, 1, 1, 1, 2)},
      {"groups4_stride2_dilation2", geo(2, 8, 10, 9, 4, 3, 3, 2, 1, 2, 4)},
      {"depthwise", geo(2, 5, 8, 8, 5, 3, 3, 1, 1, 1, 5)},
      {"depthwise_multiplier2", geo(1, 4, 6, 5, 8, 3, 3, 2, 1, 1, 4)},
      {"pointwise", geo(3, 6, 5, 4, 5, 1, 1, 1, 0, 1, 1)},
      {"pointwise_groups2", geo(2, 6, 4, 4, 4, 1, 1, 1, 0, 1, 2)},
      {"pointwise_stride2", geo(2, 6, 7, 6, 5, 1, 1, 2, 0, 1, 1)},
      // Padding wider than the kernel: whole output rows and columns see only zeros.
      {"1x1_pad2", geo(2, 3, 3, 4, 2, 1, 1, 1, 2, 1, 1)},
      {"kernel_fills_input", geo(2, 3, 3, 3, 4, 3, 3, 1, 0, 1, 1)},
      {"nonsquare", {2, 3, 5, 11, 4, 2, 4, 2, 1, 1, 2, 1, 2, 1}},
      {"batch1_wide", geo(1, 2, 4, 17, 3, 3, 3, 3, 1, 1, 1)},
  };
}

// Calls fn(x_index, w_index, y_index) for every product of the convolution: the direct
// definition, with no im2col, no GEMM and no shared code with the kernels.
template <class Fn>
void for_each_tap(const ConvGeometry& g, Fn fn) {
  const index_t cg = g.c / g.groups, kg = g.k / g.groups, oh = g.out_h(), ow = g.out_w();
  for (index_t b = 0; b < g.n; ++b)
    for (index_t o = 0; o < g.k; ++o)
      for (index_t oy = 0; oy < oh; ++oy)
        for (index_t ox = 0; ox < ow; ++ox)
          for (index_t ci = 0; ci < cg; ++ci)
            for (index_t kr = 0; kr < g.r; ++kr)
              for (index_t ks = 0; ks < g.s; ++ks) {
                const index_t iy = oy * g.stride_h - g.pad_h + kr * g.dilation_h;
                const index_t ix = ox * g.stride_w - g.pad_w + ks * g.dilation_w;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                const index_t channel = (o / kg) * cg + ci;
                fn(((b * g.c + channel) * g.h + iy) * g.w + ix, ((o * cg + ci) * g.r + kr) * g.s + ks,
                   ((b * g.k + o) * oh + oy) * ow + ox);
              }
}

index_t x_size(const ConvGeometry& g) { return g.n * g.c * g.h * g.w; }
index_t w_size(const ConvGeometry& g) { return g.k * (g.c / g.groups) * g.r * g.s; }
index_t y_size(const ConvGeometry& g) { return g.n * g.k * g.out_h() * g.out_w(); }

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

std::vector<float> naive_forward(const std::vector<float>& x, const std::vector<float>& w,
                                 const std::vector<float>& bias, const ConvGeometry& g) {
  std::vector<double> y(static_cast<std::size_t>(y_size(g)), 0.0);
  const index_t plane = g.out_h() * g.out_w();
  if (!bias.empty()) {
    for (std::size_t i = 0; i < y.size(); ++i) {
      y[i] = bias[static_cast<std::size_t>((static_cast<index_t>(i) / plane) % g.k)];
    }
  }
  for_each_tap(g, [&](index_t xi, index_t wi, index_t yi) {
    y[static_cast<std::size_t>(yi)] +=
        static_cast<double>(x[static_cast<std::size_t>(xi)]) * w[static_cast<std::size_t>(wi)];
  });
  return to_float(y);
}

// A workspace of the size the kernels ask for (never null, so a zero-byte request still works).
std::vector<float> workspace_for(const ConvGeometry& g) {
  const std::size_t bytes = kernels::cpu::conv2d_workspace_bytes(g, {}, {});
  return std::vector<float>(bytes / sizeof(float) + 1);
}

class ConvKernels : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvKernels, ForwardMatchesDirectConvolution) {
  const ConvGeometry& g = GetParam().g;
  const auto x = random_vector(static_cast<std::size_t>(x_size(g)), 1);
  const auto w = random_vector(static_cast<std::size_t>(w_size(g)), 2);
  const auto bias = random_vector(static_cast<std::size_t>(g.k), 3);
  auto ws = workspace_for(g);
  std::vector<float> y(static_cast<std::size_t>(y_size(g)), NAN);
  kernels::cpu::conv2d_forward(y.data(), x.data(), w.data(), bias.data(), g, {}, ws.data(), ws.size() * sizeof(float),
                               {});
  EXPECT_LE(testing::relative_error(y, naive_forward(x, w, bias, g)), kConvTolerance);
  // Without a bias, and over a poisoned output: every element is written.
  std::fill(y.begin(), y.end(), NAN);
  kernels::cpu::conv2d_forward(y.data(), x.data(), w.data(), nullptr, g, {}, ws.data(), ws.size() * sizeof(float), {});
  EXPECT_LE(testing::relative_error(y, naive_forward(x, w, {}, g)), kConvTolerance);
}

TEST_P(ConvKernels, BackwardDataMatchesDirectConvolution) {
  const ConvGeometry& g = GetParam().g;
  const auto dy = random_vector(static_cast<std::size_t>(y_size(g)), 4);
  const auto w = random_vector(static_cast<std::size_t>(w_size(g)), 5);
  std::vector<double> expected(static_cast<std::size_t>(x_size(g)), 0.0);
  for_each_tap(g, [&](index_t xi, index_t wi, index_t yi) {
    expected[static_cast<std::size_t>(xi)] +=
        static_cast<double>(w[static_cast<std::size_t>(wi)]) * dy[static_cast<std::size_t>(yi)];
  });
  auto ws = workspace_for(g);
  std::vector<float> dx(static_cast<std::size_t>(x_size(g)), NAN);  // overwritten, never read
  kernels::cpu::conv2d_backward_data(dx.data(), dy.data(), w.data(), g, {}, ws.data(), ws.size() * sizeof(float), {});
  EXPECT_LE(testing::relative_error(dx, to_float(expected)), kConvTolerance);
}

TEST_P(ConvKernels, BackwardFilterAccumulatesIntoGradients) {
  const ConvGeometry& g = GetParam().g;
  const auto dy = random_vector(static_cast<std::size_t>(y_size(g)), 6);
  const auto x = random_vector(static_cast<std::size_t>(x_size(g)), 7);
  auto dw = random_vector(static_cast<std::size_t>(w_size(g)), 8);
  auto db = random_vector(static_cast<std::size_t>(g.k), 9);
  std::vector<double> expected_w(dw.begin(), dw.end()), expected_b(db.begin(), db.end());
  for_each_tap(g, [&](index_t xi, index_t wi, index_t yi) {
    expected_w[static_cast<std::size_t>(wi)] +=
        static_cast<double>(x[static_cast<std::size_t>(xi)]) * dy[static_cast<std::size_t>(yi)];
  });
  const index_t plane = g.out_h() * g.out_w();
  for (index_t i = 0; i < y_size(g); ++i) {
    expected_b[static_cast<std::size_t>((i / plane) % g.k)] += dy[static_cast<std::size_t>(i)];
  }
  auto ws = workspace_for(g);
  kernels::cpu::conv2d_backward_filter(dw.data(), db.data(), dy.data(), x.data(), g, {}, ws.data(),
                                       ws.size() * sizeof(float), {});
  EXPECT_LE(testing::relative_error(dw, to_float(expected_w)), kConvTolerance);
  EXPECT_LE(testing::relative_error(db, to_float(expected_b)), kConvTolerance);
}

std::string conv_case_name(const ::testing::TestParamInfo<ConvCase>& c) { return c.param.name; }

INSTANTIATE_TEST_SUITE_P(Cpu, ConvKernels, ::testing::ValuesIn(conv_cases()), conv_case_name);

TEST(ConvKernelErrors, BadGeometryAndSmallWorkspaceAreRefused) {
  EXPECT_THROW(kernels::validate(geo(1, 6, 5, 5, 4, 3, 3, 1, 0, 1, 4)), ValueError);  // 4 does not divide 6
  EXPECT_THROW(kernels::validate(geo(1, 2, 2, 2, 4, 3, 3, 1, 0, 1, 1)), ValueError);  // 3x3 kernel, 2x2 input
  EXPECT_THROW(kernels::validate(geo(1, 2, 5, 5, 4, 3, 3, 0, 0, 1, 1)), ValueError);  // stride 0
  EXPECT_NO_THROW(kernels::validate(geo(0, 2, 5, 5, 4, 3, 3, 1, 0, 1, 1)));           // an empty batch is fine
  const ConvGeometry g = geo(1, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1);
  std::vector<float> x(static_cast<std::size_t>(x_size(g))), w(static_cast<std::size_t>(w_size(g))),
      y(static_cast<std::size_t>(y_size(g))), ws(4);
  try {
    kernels::cpu::conv2d_forward(y.data(), x.data(), w.data(), nullptr, g, {}, ws.data(), 16, {});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(),
                 "conv2d_forward: workspace of 16 bytes, need 1800 for x [1, 2, 5, 5], w [3, 2, 3, 3], stride 1x1, "
                 "padding 1x1, dilation 1x1, groups 1");
  }
}

// ---------------------------------------------------------------------------------------------
// the layer

Tensor random_input(const Shape& shape, std::uint64_t salt, float low = -2.0f, float high = 2.0f) {
  return Tensor::from_vector(random_vector(static_cast<std::size_t>(shape.numel()), salt, low, high), shape);
}

TEST(Conv2dLayer, ForwardMatchesDirectConvolution) {
  Conv2d conv(4, 6, 3, {.stride = 2, .padding = 1, .dilation = 2, .groups = 2});
  const Tensor x = random_input({3, 4, 9, 8}, 111);
  const Tensor y = conv.forward(x);
  const ConvGeometry g = geo(3, 4, 9, 8, 6, 3, 3, 2, 1, 2, 2);
  ASSERT_EQ(y.shape(), Shape({3, 6, g.out_h(), g.out_w()}));
  EXPECT_LE(testing::relative_error(y.to_vector<float>(),
                                    naive_forward(x.to_vector<float>(), conv.weight().value.to_vector<float>(),
                                                  conv.bias().value.to_vector<float>(), g)),
            kConvTolerance);
  EXPECT_EQ(conv.weight().value.shape(), Shape({6, 2, 3, 3}));
}

TEST(Conv2dLayer, WithoutInputGradientSkipsDxAndKeepsWeightGradients) {
  manual_seed(21);
  Conv2d full(3, 4, 3, {.padding = 1});
  manual_seed(21);
  Conv2d lean(3, 4, 3, {.padding = 1});
  lean.set_input_grad(false);
  const Tensor x = random_input({2, 3, 6, 5}, 22), dy = random_input({2, 4, 6, 5}, 23);
  full.forward(x);
  lean.forward(x);
  EXPECT_EQ(full.backward(dy).shape(), x.shape());
  EXPECT_FALSE(lean.backward(dy).defined());
  EXPECT_EQ(full.weight().grad.to_vector<float>(), lean.weight().grad.to_vector<float>());
  EXPECT_EQ(full.bias().grad.to_vector<float>(), lean.bias().grad.to_vector<float>());
}

TEST(Conv2dLayer, WithoutBiasHasOneParameter) {
  Conv2d conv(2, 3, 3, {.padding = 1, .bias = false});
  ASSERT_EQ(conv.parameters().size(), 1u);
  EXPECT_EQ(conv.parameters()[0]->name, "weight");
  EXPECT_FALSE(conv.bias().value.defined());
  const Tensor x = random_input({2, 2, 4, 5}, 112);
  EXPECT_LE(testing::relative_error(conv.forward(x).to_vector<float>(),
                                    naive_forward(x.to_vector<float>(), conv.weight().value.to_vector<float>(), {},
                                                  geo(2, 2, 4, 5, 3, 3, 3, 1, 1, 1, 1))),
            kConvTolerance);
  EXPECT_EQ(conv.describe(), "Conv2d(2, 3, 3, stride=1, padding=1, bias=false)");
}

TEST(Conv2dLayer, SamePaddingKeepsTheSpatialSize) {
  Conv2d five(3, 8, 5, {.same = true});
  EXPECT_EQ(five.padding(), 2);
  EXPECT_EQ(five.output_shape({3, 17, 12}), Shape({8, 17, 12}));
  Conv2d dilated(3, 8, 3, {.same = true, .dilation = 3});
  EXPECT_EQ(dilated.padding(), 3);
  EXPECT_EQ(dilated.kernel_extent(), 7);
  EXPECT_EQ(dilated.forward(Tensor::zeros({2, 3, 9, 7})).shape(), Shape({2, 8, 9, 7}));
  EXPECT_THROW(Conv2d(3, 8, 4, {.same = true}), ValueError);               // even kernel
  EXPECT_THROW(Conv2d(3, 8, 3, {.stride = 2, .same = true}), ValueError);  // stride 2
  EXPECT_THROW(Conv2d(3, 8, 3, {.padding = 1, .same = true}), ValueError);
}

TEST(Conv2dLayer, ShapesFlopsAndReceptiveFieldHooks) {
  Conv2d conv(3, 64, 3, {.padding = 1});
  EXPECT_EQ(conv.describe(), "Conv2d(3, 64, 3, stride=1, padding=1)");
  EXPECT_EQ(conv.output_shape({3, 32, 32}), Shape({64, 32, 32}));
  EXPECT_EQ(conv.flops({3, 32, 32}), 2 * 64 * 27 * 1024 + 64 * 1024);
  Conv2d down(64, 128, 3, {.stride = 2, .padding = 1, .dilation = 2, .groups = 4});
  EXPECT_EQ(down.describe(), "Conv2d(64, 128, 3, stride=2, padding=1, dilation=2, groups=4)");
  EXPECT_EQ(down.output_shape({64, 32, 32}), Shape({128, 15, 15}));  // (32 + 2 - 5) / 2 + 1
  EXPECT_EQ(down.kernel_extent(), 5);
  EXPECT_EQ(down.stride(), 2);
  EXPECT_EQ(down.padding(), 1);
  EXPECT_EQ(down.weight().value.shape(), Shape({128, 16, 3, 3}));
  // Two 3×3 stride-1 convolutions see 5×5; then a dilated stride-2 one adds 4 more pixels a side.
  ReceptiveField field;
  conv.update_receptive_field(field);
  Conv2d(64, 64, 3, {.padding = 1}).update_receptive_field(field);
  EXPECT_EQ(field.size, 5.0);
  EXPECT_EQ(field.start, 0.5);
  down.update_receptive_field(field);
  EXPECT_EQ(field.size, 9.0);
  EXPECT_EQ(field.jump, 2.0);
  EXPECT_EQ(field.start, 1.5);  // (5 - 1) / 2 - 1 = 1 pixel to the right
}

TEST(Conv2dLayer, DefaultInitIsUniformOverFanIn) {
  Generator gen(7);
  Conv2d conv(8, 16, 3, {.groups = 2, .generator = &gen});
  const double bound = 1.0 / std::sqrt(4.0 * 9.0);  // fan_in = 8 / 2 * 3 * 3
  double largest = 0.0;
  for (float v : conv.weight().value.to_vector<float>()) largest = std::max(largest, std::abs(static_cast<double>(v)));
  EXPECT_LE(largest, bound);
  EXPECT_GT(largest, 0.9 * bound);  // 576 draws: the largest is within 10% of the bound
  for (float v : conv.bias().value.to_vector<float>()) EXPECT_LE(std::abs(v), bound);
}

TEST(Conv2dLayer, ErrorsNameTheLayerAndTheShapes) {
  Conv2d conv(3, 64, 3, {.padding = 1});
  try {
    conv.forward(Tensor::zeros({8, 4, 32, 32}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "Conv2d(3, 64, 3, stride=1, padding=1): expected input (N, 3, H, W), got [8, 4, 32, 32]");
  }
  EXPECT_THROW(conv.forward(Tensor::zeros({3, 32, 32})), ShapeError);
  try {
    conv.output_shape({4, 32, 32});
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "Conv2d(3, 64, 3, stride=1, padding=1): expected a sample (3, H, W), got [4, 32, 32]");
  }
  Conv2d big(1, 1, 5, {.dilation = 2});
  try {
    big.output_shape({1, 8, 12});
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(),
                 "Conv2d(1, 1, 5, stride=1, padding=0, dilation=2): kernel extent 9 is larger than the padded input "
                 "8x12 of [1, 8, 12]");
  }
  EXPECT_THROW(big.forward(Tensor::zeros({2, 1, 8, 12})), ShapeError);
  try {
    Conv2d(6, 4, 3, {.groups = 4});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(),
                 "Conv2d(6, 4, 3, stride=1, padding=0, groups=4): groups must divide both in_channels and "
                 "out_channels");
  }
  EXPECT_THROW(Conv2d(0, 4, 3), ValueError);
  EXPECT_THROW(Conv2d(3, 4, 0), ValueError);
  EXPECT_THROW(Conv2d(3, 4, 3, {.stride = 0}), ValueError);
  EXPECT_THROW(Conv2d(3, 4, 3, {.padding = -1}), ValueError);
  EXPECT_THROW(Conv2d(3, 4, 3, {.dilation = 0}), ValueError);
}

TEST(Conv2dLayer, BackwardNeedsATrainModeForwardAndAMatchingGradient) {
  Conv2d conv(2, 3, 3);
  const Tensor x = random_input({2, 2, 5, 5}, 113);
  EXPECT_THROW(conv.backward(Tensor::zeros({2, 3, 3, 3})), Error);
  conv.forward(x);
  try {
    conv.backward(Tensor::zeros({2, 3, 4, 3}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(),
                 "Conv2d(2, 3, 3, stride=1, padding=0): gradient [2, 3, 4, 3] does not match output [2, 3, 3, 3]");
  }
  EXPECT_EQ(conv.backward(Tensor::zeros({2, 3, 3, 3})).shape(), x.shape());
  conv.eval();
  conv.forward(x);
  EXPECT_THROW(conv.backward(Tensor::zeros({2, 3, 3, 3})), Error);  // eval mode keeps nothing
}

TEST(Conv2dLayer, GradientsAccumulateUntilZeroed) {
  Conv2d conv(2, 2, 3, {.padding = 1});
  const Tensor x = random_input({2, 2, 4, 4}, 114);
  const Tensor g = random_input({2, 2, 4, 4}, 115);
  conv.zero_grad();
  conv.forward(x);
  conv.backward(g);
  const auto once = conv.weight().grad.to_vector<float>();
  const auto once_b = conv.bias().grad.to_vector<float>();
  conv.forward(x);
  conv.backward(g);
  const auto twice = conv.weight().grad.to_vector<float>();
  const auto twice_b = conv.bias().grad.to_vector<float>();
  for (std::size_t i = 0; i < once.size(); ++i) EXPECT_FLOAT_EQ(twice[i], 2 * once[i]);
  for (std::size_t i = 0; i < once_b.size(); ++i) EXPECT_FLOAT_EQ(twice_b[i], 2 * once_b[i]);
}

TEST(Conv2dLayer, EmptyBatch) {
  Conv2d conv(2, 3, 3, {.padding = 1});
  const Tensor y = conv.forward(Tensor::zeros({0, 2, 4, 4}));
  EXPECT_EQ(y.shape(), Shape({0, 3, 4, 4}));
  EXPECT_EQ(conv.backward(y).shape(), Shape({0, 2, 4, 4}));
}

}  // namespace
}  // namespace gpudl
