// ConvTranspose2d and Upsample on the CPU: hand-worked values forward and backward, shapes, options,
// initialisation, error messages, and PyTorch's outputs and gradients where its Python is at hand
// (the layers' gradient checks and GPU equivalence are cases of the op table, tests/cases).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gpudl/core/io/safetensors.h"
#include "gpudl/layers/conv_transpose.h"
#include "gpudl/layers/upsample.h"
#include "python_util.h"
#include "test_util.h"

namespace gpudl {
namespace {

using testing::error_of;
using testing::random_vector;

// Hand-worked values are sums of a few products of small integers and quarters: exact in float.
void expect_values(const Tensor& t, const Shape& shape, const std::vector<float>& expected) {
  ASSERT_EQ(t.shape(), shape);
  EXPECT_EQ(t.to_vector<float>(), expected);
}

Tensor tensor(const std::vector<float>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }

// ---------------------------------------------------------------------------------------------
// ConvTranspose2d: hand-worked values

// Stride 2 with a 2x2 kernel: each input pixel stamps value x weight into its own 2x2 block.
TEST(ConvTranspose2d, Stride2StampsTheKernelPerPixel) {
  ConvTranspose2d layer(1, 1, 2, {.stride = 2, .bias = false});
  layer.weight().value.copy_from(tensor({1, 2, 3, 4}, {1, 1, 2, 2}));
  const Tensor y = layer.forward(tensor({1, 2, 3, 4}, {1, 1, 2, 2}));
  expect_values(y, {1, 1, 4, 4}, {1, 2, 2, 4, 3, 4, 6, 8, 3, 6, 4, 8, 9, 12, 12, 16});
  // dX[i, j] = sum over the block of weight x dY; dW[a, b] = sum over pixels of x x dY at (2i + a, 2j + b).
  std::vector<float> dy(16);
  for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = static_cast<float>(i);
  const Tensor dx = layer.backward(tensor(dy, {1, 1, 4, 4}));
  // Block (0, 0) holds dY 0 1 / 4 5: 1*0 + 2*1 + 3*4 + 4*5 = 34; the others shift by 2, 8, 10 per tap.
  expect_values(dx, {1, 1, 2, 2}, {34, 34 + 20, 34 + 80, 34 + 100});
  // dW[0, 0] = 1*0 + 2*2 + 3*8 + 4*10 = 68; dW[0, 1] adds x's sum (10) once, dW[1, 0] four times.
  expect_values(layer.weight().grad, {1, 1, 2, 2}, {68, 78, 108, 118});
}

// Stride 1: the stamps overlap and add; the bias lands on every output.
TEST(ConvTranspose2d, OverlappingStampsAddAndTheBiasIsAdded) {
  ConvTranspose2d layer(1, 1, 2);
  layer.weight().value.copy_from(tensor({1, 1, 1, 1}, {1, 1, 2, 2}));
  layer.bias().value.copy_from(tensor({0.5f}, {1}));
  const Tensor y = layer.forward(tensor({1, 2, 3, 4}, {1, 1, 2, 2}));
  expect_values(y, {1, 1, 3, 3}, {1.5f, 3.5f, 2.5f, 4.5f, 10.5f, 6.5f, 3.5f, 7.5f, 4.5f});
  (void)layer.backward(Tensor::full({1, 1, 3, 3}, 1.0));
  expect_values(layer.bias().grad, {1}, {9});
}

// Padding crops the full (5x5) stamp map on every side, output_padding gives back a row and a
// column at the bottom and right: rows and columns 1..4 of
//   1 1  3 2 2 / 1 1  3 2 2 / 4 4 10 6 6 / 3 3 7 4 4 / 3 3 7 4 4.
TEST(ConvTranspose2d, PaddingCropsAndOutputPaddingExtends) {
  ConvTranspose2d layer(1, 1, 3, {.stride = 2, .padding = 1, .output_padding = 1, .bias = false});
  layer.weight().value.copy_from(Tensor::full({1, 1, 3, 3}, 1.0));
  const Tensor y = layer.forward(tensor({1, 2, 3, 4}, {1, 1, 2, 2}));
  expect_values(y, {1, 1, 4, 4}, {1, 3, 2, 2, 4, 10, 6, 6, 3, 7, 4, 4, 3, 7, 4, 4});
  EXPECT_EQ(layer.output_shape({1, 2, 2}), (Shape{1, 4, 4}));
}

// output_padding 1 >= stride 1, allowed below the dilation 2: the taps of the single pixel fall
// at (0, 0), (0, 2), (2, 0), (2, 2) and the extra row and column see nothing but the bias.
TEST(ConvTranspose2d, OutputPaddingPastTheStrideBelowTheDilation) {
  ConvTranspose2d layer(1, 1, 2, {.output_padding = 1, .dilation = 2});
  layer.weight().value.copy_from(tensor({1, 2, 3, 4}, {1, 1, 2, 2}));
  layer.bias().value.copy_from(tensor({-1}, {1}));
  const Tensor y = layer.forward(tensor({5}, {1, 1, 1, 1}));
  expect_values(y, {1, 1, 4, 4}, {4, -1, 9, -1, -1, -1, -1, -1, 14, -1, 19, -1, -1, -1, -1, -1});
  std::vector<float> dy(16);
  for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = static_cast<float>(i);
  const Tensor dx = layer.backward(tensor(dy, {1, 1, 4, 4}));
  // The taps read dY 0, 2, 8, 10: 1*0 + 2*2 + 3*8 + 4*10.
  expect_values(dx, {1, 1, 1, 1}, {68});
  expect_values(layer.weight().grad, {1, 1, 2, 2}, {0, 10, 40, 50});
  expect_values(layer.bias().grad, {1}, {120});
}

// Groups keep channels apart: input channel g feeds only the outputs of group g.
TEST(ConvTranspose2d, GroupsKeepChannelsApart) {
  ConvTranspose2d layer(2, 4, 1, {.groups = 2, .bias = false});
  ASSERT_EQ(layer.weight().value.shape(), (Shape{2, 2, 1, 1}));
  layer.weight().value.copy_from(tensor({1, 2, 3, 4}, {2, 2, 1, 1}));
  const Tensor y = layer.forward(tensor({1, 10}, {1, 2, 1, 1}));
  expect_values(y, {1, 4, 1, 1}, {1, 2, 30, 40});
}

// ---------------------------------------------------------------------------------------------
// ConvTranspose2d: shapes, options, initialisation, errors

TEST(ConvTranspose2d, ShapesFlopsAndDescription) {
  ConvTranspose2d layer(4, 6, 3, {.stride = 2, .padding = 1, .output_padding = 1, .groups = 2});
  EXPECT_EQ(layer.describe(), "ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)");
  EXPECT_EQ(ConvTranspose2d(3, 2, 2, {.dilation = 2, .bias = false}).describe(),
            "ConvTranspose2d(3, 2, 2, stride=1, padding=0, dilation=2, bias=false)");
  // (H - 1) stride - 2 padding + dilation (kernel - 1) + output_padding + 1.
  EXPECT_EQ(layer.output_shape({4, 5, 7}), (Shape{6, 10, 14}));
  EXPECT_EQ(layer.forward(Tensor::zeros({2, 4, 5, 7})).shape(), (Shape{2, 6, 10, 14}));
  EXPECT_EQ(layer.flops({4, 5, 7}), 2 * 4 * 3 * 9 * 35 + 6 * 10 * 14);
  EXPECT_EQ(layer.parameters().size(), 2u);
  EXPECT_EQ(layer.bias().value.shape(), (Shape{6}));
  // Its receptive field: an output reads about 3 / 2 inputs, at half their spacing.
  ReceptiveField field;
  layer.update_receptive_field(field);
  EXPECT_DOUBLE_EQ(field.jump, 0.5);
  EXPECT_DOUBLE_EQ(field.size, 2.0);
}

// PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = weight.size(1) k² =
// out / groups k² (here 4 x 9 = 36: bound 1/6), not in / groups k² (72) as for Conv2d.
TEST(ConvTranspose2d, DefaultInitUsesPyTorchsFanIn) {
  manual_seed(7);
  ConvTranspose2d layer(16, 8, 3, {.groups = 2});
  ASSERT_EQ(layer.weight().value.shape(), (Shape{16, 4, 3, 3}));
  const double bound = 1.0 / 6.0;
  for (const Tensor& t : {layer.weight().value, layer.bias().value}) {
    const std::vector<float> v = t.to_vector<float>();
    float largest = 0.0f;
    for (float x : v) largest = std::max(largest, std::abs(x));
    EXPECT_LE(largest, bound);
    if (v.size() > 100) {
      EXPECT_GT(largest, 0.95 * bound);  // 576 draws come near the bound
    }
  }
}

TEST(ConvTranspose2d, BadOptionsAndInputsAreOneLineErrorsNamingTheLayer) {
  std::string e = error_of<ValueError>([] { ConvTranspose2d(2, 2, 3, {.stride = 2, .output_padding = 2}); });
  EXPECT_NE(e.find("ConvTranspose2d(2, 2, 3, stride=2, padding=0, output_padding=2)"), std::string::npos) << e;
  EXPECT_NE(e.find("smaller than the stride or the dilation"), std::string::npos) << e;
  e = error_of<ValueError>([] { ConvTranspose2d(3, 4, 3, {.groups = 2}); });
  EXPECT_NE(e.find("groups must divide"), std::string::npos) << e;
  EXPECT_NE(error_of<ValueError>([] { ConvTranspose2d(3, 4, 0); }).find("kernel size"), std::string::npos);
  EXPECT_NE(error_of<ValueError>([] { ConvTranspose2d(3, 4, 3, {.padding = -1}); }).find(">= 0"), std::string::npos);

  ConvTranspose2d layer(3, 2, 3, {.padding = 2});
  e = error_of<ShapeError>([&] { (void)layer.forward(Tensor::zeros({1, 4, 5, 5})); });
  EXPECT_NE(e.find("ConvTranspose2d(3, 2, 3"), std::string::npos) << e;
  EXPECT_NE(e.find("[1, 4, 5, 5]"), std::string::npos) << e;
  // (1 - 1) - 4 + 3 = -1 rows: nothing is left of the output.
  e = error_of<ShapeError>([&] { (void)layer.forward(Tensor::zeros({1, 3, 1, 4})); });
  EXPECT_NE(e.find("empty output"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  e = error_of<ShapeError>([&] {
    (void)layer.forward(Tensor::zeros({1, 3, 4, 4}));
    (void)layer.backward(Tensor::zeros({1, 2, 3, 3}));
  });
  EXPECT_NE(e.find("ConvTranspose2d(3, 2, 3"), std::string::npos) << e;
}

// set_input_grad(false) skips dX, as Conv2d does; the parameter gradients are still there.
TEST(ConvTranspose2d, InputGradOffSkipsTheInputGradient) {
  ConvTranspose2d layer(2, 3, 3, {.stride = 2});
  layer.set_input_grad(false);
  const Tensor y = layer.forward(Tensor::full({1, 2, 3, 3}, 1.0));
  EXPECT_FALSE(layer.backward(Tensor::full(y.shape(), 1.0)).defined());
  EXPECT_NE(layer.bias().grad.to_vector<float>()[0], 0.0f);
}

// ---------------------------------------------------------------------------------------------
// Upsample

TEST(Upsample, NearestRepeatsEachPixel) {
  Upsample layer(2);
  const Tensor y = layer.forward(tensor({1, 2, 3, 4}, {1, 1, 2, 2}));
  expect_values(y, {1, 1, 4, 4}, {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  std::vector<float> dy(16);
  for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = static_cast<float>(i);
  // Each input gathers its 2x2 block: 0+1+4+5, 2+3+6+7, 8+9+12+13, 10+11+14+15.
  expect_values(layer.backward(tensor(dy, {1, 1, 4, 4})), {1, 1, 2, 2}, {10, 18, 42, 50});
}

// PyTorch's align_corners=False at scale 2: along an axis [a, b] -> [a, 3a/4 + b/4, a/4 + 3b/4, b]
// (the outer outputs clamp to the edge inputs), rows first then columns.
TEST(Upsample, BilinearMatchesPyTorchsHalfPixelRule) {
  Upsample layer(2, UpsampleMode::kBilinear);
  const Tensor y = layer.forward(tensor({1, 2, 3, 4}, {1, 1, 2, 2}));
  expect_values(y, {1, 1, 4, 4},
                {1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f, 2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f, 3.75f, 4});
  // Along an axis each input's weights sum to 1 + 3/4 + 1/4 = 2, so a gradient of ones gives 4.
  expect_values(layer.backward(Tensor::full({1, 1, 4, 4}, 1.0)), {1, 1, 2, 2}, {4, 4, 4, 4});
}

// At scale 3 the middle output of each triple sits on its input, the others a third away.
TEST(Upsample, BilinearScale3) {
  Upsample layer(3, UpsampleMode::kBilinear);
  const Tensor y = layer.forward(tensor({0, 3}, {1, 1, 1, 2}));
  expect_values(y, {1, 1, 3, 6}, {0, 0, 1, 2, 3, 3, 0, 0, 1, 2, 3, 3, 0, 0, 1, 2, 3, 3});
}

// Backward is the forward's adjoint: <up(x), dy> = <x, up^T(dy)>, for both modes and scales.
TEST(Upsample, BackwardIsTheAdjointOfForward) {
  for (const UpsampleMode mode : {UpsampleMode::kNearest, UpsampleMode::kBilinear}) {
    for (const std::int64_t scale : {1, 2, 3, 4}) {
      Upsample layer(scale, mode);
      const Shape in{2, 3, 5, 4}, out{2, 3, 5 * scale, 4 * scale};
      const std::vector<float> x = random_vector(static_cast<std::size_t>(in.numel()), 1);
      const std::vector<float> dy = random_vector(static_cast<std::size_t>(out.numel()), 2);
      const std::vector<float> y = layer.forward(tensor(x, in)).to_vector<float>();
      const std::vector<float> dx = layer.backward(tensor(dy, out)).to_vector<float>();
      double lhs = 0.0, rhs = 0.0, scale_of = 0.0;
      for (std::size_t i = 0; i < y.size(); ++i) lhs += static_cast<double>(y[i]) * dy[i];
      for (std::size_t i = 0; i < x.size(); ++i) rhs += static_cast<double>(x[i]) * dx[i];
      for (std::size_t i = 0; i < x.size(); ++i) scale_of += std::abs(static_cast<double>(x[i]) * dx[i]);
      // Float sums of a few dozen terms each: ~1e-6 of the magnitude.
      EXPECT_NEAR(lhs, rhs, 1e-5 * scale_of) << layer.describe();
    }
  }
}

TEST(Upsample, ShapesDescriptionAndErrors) {
  Upsample layer(3, UpsampleMode::kBilinear);
  EXPECT_EQ(layer.describe(), "Upsample(scale_factor=3, mode=bilinear)");
  EXPECT_EQ(Upsample(2).describe(), "Upsample(scale_factor=2, mode=nearest)");
  EXPECT_EQ(layer.output_shape({4, 5, 6}), (Shape{4, 15, 18}));
  EXPECT_EQ(layer.flops({4, 5, 6}), 8 * 4 * 15 * 18);
  EXPECT_EQ(Upsample(2).flops({4, 5, 6}), 0);
  EXPECT_TRUE(layer.parameters().empty());
  ReceptiveField field;
  Upsample(2).update_receptive_field(field);
  EXPECT_DOUBLE_EQ(field.jump, 0.5);
  EXPECT_DOUBLE_EQ(field.size, 1.0);
  EXPECT_DOUBLE_EQ(field.start, 0.25);  // the first output's centre, a quarter into the first input

  std::string e = error_of<ValueError>([] { Upsample(0); });
  EXPECT_NE(e.find("Upsample(scale_factor=0, mode=nearest)"), std::string::npos) << e;
  e = error_of<ShapeError>([&] { (void)layer.forward(Tensor::zeros({2, 3, 4})); });
  EXPECT_NE(e.find("Upsample(scale_factor=3, mode=bilinear)"), std::string::npos) << e;
  EXPECT_NE(e.find("[2, 3, 4]"), std::string::npos) << e;
  e = error_of<ShapeError>([&] {
    (void)layer.forward(Tensor::zeros({1, 1, 2, 2}));
    (void)layer.backward(Tensor::zeros({1, 1, 4, 4}));
  });
  EXPECT_NE(e.find("Upsample(scale_factor=3"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

// ---------------------------------------------------------------------------------------------
// Against PyTorch (tests/interop/torch_upsampling.py), outputs and every gradient

struct TorchCase {
  std::string name;
  std::string spec;  // torch_upsampling.py's description
  std::function<std::unique_ptr<Module>()> make;
  Shape input;
};

std::vector<TorchCase> torch_cases() {
  auto ct = [](std::int64_t in, std::int64_t out, std::int64_t k, ConvTranspose2dOptions o) {
    return std::function<std::unique_ptr<Module>()>([=] { return std::make_unique<ConvTranspose2d>(in, out, k, o); });
  };
  auto up = [](std::int64_t s, UpsampleMode m) {
    return std::function<std::unique_ptr<Module>()>([=] { return std::make_unique<Upsample>(s, m); });
  };
  return {
      {"ct_strided", "conv_transpose 2 3 3 2 1 1 1 1 1", ct(2, 3, 3, {.stride = 2, .padding = 1, .output_padding = 1}),
       {2, 2, 3, 4}},
      {"ct_grouped_dilated", "conv_transpose 4 6 3 2 2 1 2 2 1",
       ct(4, 6, 3, {.stride = 2, .padding = 2, .output_padding = 1, .dilation = 2, .groups = 2}), {2, 4, 4, 3}},
      {"ct_output_padding_past_stride", "conv_transpose 2 4 3 2 1 2 3 2 0",
       ct(2, 4, 3, {.stride = 2, .padding = 1, .output_padding = 2, .dilation = 3, .groups = 2, .bias = false}),
       {1, 2, 3, 4}},
      {"ct_pointwise", "conv_transpose 3 2 1 1 0 0 1 1 1", ct(3, 2, 1, {}), {2, 3, 2, 3}},
      {"up_nearest_3", "upsample 3 nearest", up(3, UpsampleMode::kNearest), {2, 2, 3, 4}},
      {"up_bilinear_2", "upsample 2 bilinear", up(2, UpsampleMode::kBilinear), {2, 3, 5, 4}},
      {"up_bilinear_3", "upsample 3 bilinear", up(3, UpsampleMode::kBilinear), {1, 2, 4, 1}},
  };
}

// Float against PyTorch's float64 on the same values: sums of at most a few dozen products.
constexpr double kTorchTolerance = 1e-5;

TEST(ConvTransposeUpsampleTorch, OutputsAndGradientsMatchPyTorch) {
  const std::string missing = testing::python_missing("import torch, safetensors");
  if (!missing.empty()) GTEST_SKIP() << missing;
  testing::ScratchDir scratch("gpudl_upsampling");
  const std::string dir = scratch.path();
  manual_seed(testing::test_seed());
  std::vector<std::unique_ptr<Module>> modules;
  std::vector<NamedTensor> tensors;
  std::vector<std::pair<std::string, std::string>> specs;
  std::vector<Tensor> outputs, input_grads;
  std::uint64_t salt = 10;
  for (const TorchCase& c : torch_cases()) {
    auto m = c.make();
    const Tensor x = tensor(random_vector(static_cast<std::size_t>(c.input.numel()), ++salt), c.input);
    const Tensor y = m->forward(x);
    const Tensor dy = tensor(random_vector(static_cast<std::size_t>(y.numel()), ++salt), y.shape());
    input_grads.push_back(m->backward(dy));
    outputs.push_back(y);
    tensors.push_back({c.name + ".x", x});
    tensors.push_back({c.name + ".dy", dy});
    for (const auto& [name, p] : m->named_parameters()) tensors.push_back({c.name + "." + name, p->value});
    specs.push_back({c.name, c.spec});
    modules.push_back(std::move(m));
  }
  save_safetensors(dir + "/cases.safetensors", tensors, specs);
  const auto [status, log] = testing::run_python(std::string(GPUDL_INTEROP_DIR) + "/torch_upsampling.py",
                                                 testing::shell_quote(dir), dir + "/torch.log");
  ASSERT_EQ(status, 0) << log;
  const SafetensorsContents torch = load_safetensors(dir + "/torch.safetensors");
  const auto get = [&](const std::string& name) -> std::vector<float> {
    for (const auto& [n, t] : torch.tensors) {
      if (n == name) return t.to_vector<float>();
    }
    ADD_FAILURE() << "PyTorch wrote no " << name;
    return {};
  };
  const std::vector<TorchCase> cases = torch_cases();
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string& n = cases[i].name;
    const double ey = testing::relative_error(outputs[i].to_vector<float>(), get(n + ".y"));
    const double edx = testing::relative_error(input_grads[i].to_vector<float>(), get(n + ".dx"));
    EXPECT_LE(ey, kTorchTolerance) << n << " output";
    EXPECT_LE(edx, kTorchTolerance) << n << " input gradient";
    std::printf("%s: relative error output %.2e, input gradient %.2e", n.c_str(), ey, edx);
    for (const auto& [name, p] : modules[i]->named_parameters()) {
      const double e = testing::relative_error(p->grad.to_vector<float>(), get(n + ".d" + name));
      EXPECT_LE(e, kTorchTolerance) << n << " gradient of " << name;
      std::printf(", %s gradient %.2e", name.c_str(), e);
    }
    std::printf("\n");
  }
}

}  // namespace
}  // namespace gpudl
