// The airbench network of the model zoo: its shape and parameters, the Dirac start of its
// convolutions, the patch whitening of its first layer, and which parameters its recipe trains.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gpudl/core/runtime/rng.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/models/cifar.h"
#include "test_util.h"

namespace gpudl {
namespace {

std::int64_t count(const std::vector<Parameter*>& params) {
  std::int64_t n = 0;
  for (const Parameter* p : params) n += p->value.numel();
  return n;
}

TEST(Airbench, ShapesAndParameters) {
  manual_seed(1);
  Sequential net = models::airbench();
  EXPECT_EQ(net.output_shape({3, 32, 32}), Shape({10}));
  EXPECT_EQ(count(net.parameters()), 1972792);
  EXPECT_EQ(net.forward(Tensor::zeros({2, 3, 32, 32})).shape(), Shape({2, 10}));
  // Trained: all but the 24 x 12 whitening filters and the six batch norms' scales (64 + 64 +
  // 256 x 4 values).
  const std::vector<Parameter*> trained = models::airbench_trained_parameters(net);
  EXPECT_EQ(trained.size(), net.parameters().size() - 7);
  EXPECT_EQ(count(trained), 1972792 - 288 - (64 + 64 + 4 * 256));
  EXPECT_EQ(std::find(trained.begin(), trained.end(), net[0].parameters()[0]), trained.end());
  EXPECT_NE(std::find(trained.begin(), trained.end(), net[0].parameters()[1]), trained.end());
}

TEST(Airbench, ConvolutionsStartAsPartialIdentities) {
  manual_seed(2);
  Sequential group = models::airbench_group(3, 5);
  // The first convolution, 3 -> 5: filters 0..2 pass their own channel; 3 and 4 are random.
  const std::vector<float> w = group[0].parameters()[0]->value.to_vector<float>();
  for (int o = 0; o < 5; ++o) {
    for (int i = 0; i < 3; ++i) {
      for (int k = 0; k < 9; ++k) {
        const float v = w[static_cast<std::size_t>((o * 3 + i) * 9 + k)];
        if (o < 3) {
          EXPECT_EQ(v, o == i && k == 4 ? 1.0f : 0.0f) << o << " " << i << " " << k;
        }
      }
    }
  }
  EXPECT_NE(w[3 * 27 + 4], 0.0f);
}

// Images whose neighbouring pixels and channels are correlated, as photographs are: a random
// field smoothed along both axes plus a share common to the channels.
Tensor correlated_images(std::int64_t n, std::int64_t size) {
  const std::vector<float> noise = testing::random_vector(static_cast<std::size_t>(n * 3 * size * size), 9);
  std::vector<float> out(noise.size());
  const auto at = [&](std::int64_t i, std::int64_t c, std::int64_t y, std::int64_t x) {
    return noise[static_cast<std::size_t>(((i * 3 + c) * size + std::min(y, size - 1)) * size + std::min(x, size - 1))];
  };
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t c = 0; c < 3; ++c) {
      for (std::int64_t y = 0; y < size; ++y) {
        for (std::int64_t x = 0; x < size; ++x) {
          const float smooth = at(i, c, y, x) + at(i, c, y + 1, x) + at(i, c, y, x + 1) + at(i, c, y + 1, x + 1);
          out[static_cast<std::size_t>(((i * 3 + c) * size + y) * size + x)] =
              smooth + 0.8f * at(i, 0, y, x) + 0.5f;
        }
      }
    }
  }
  return Tensor::from_vector(out, {n, 3, size, size});
}

// After whitening, the first 12 output channels are uncorrelated with unit variance over every
// patch of the images it was fitted to (eps small next to every eigenvalue), zero mean, and
// channels 12..23 are their negations.
TEST(Airbench, PatchWhiteningDecorrelatesThePatches) {
  const Tensor images = correlated_images(40, 10);
  Conv2d whiten(3, 24, 2);
  models::init_patch_whitening(whiten, images, 1e-7f);
  whiten.eval();
  const Tensor y = whiten.forward(images);  // (40, 24, 9, 9)
  const std::vector<float> v = y.to_vector<float>();
  const std::int64_t n = 40, positions = 81;
  const auto value = [&](std::int64_t i, std::int64_t c, std::int64_t p) {
    return static_cast<double>(v[static_cast<std::size_t>((i * 24 + c) * positions + p)]);
  };
  const double m = static_cast<double>(n * positions);
  double worst_diag = 0.0, worst_off = 0.0, worst_mean = 0.0;
  for (std::int64_t a = 0; a < 12; ++a) {
    double mean = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t p = 0; p < positions; ++p) {
        mean += value(i, a, p);
        EXPECT_EQ(value(i, a + 12, p), -value(i, a, p));
      }
    }
    worst_mean = std::max(worst_mean, std::abs(mean / m));
    for (std::int64_t b = a; b < 12; ++b) {
      double s = 0.0;
      for (std::int64_t i = 0; i < n; ++i) {
        for (std::int64_t p = 0; p < positions; ++p) s += value(i, a, p) * value(i, b, p);
      }
      const double cov = s / (m - 1.0);
      if (a == b) {
        worst_diag = std::max(worst_diag, std::abs(cov - 1.0));
      } else {
        worst_off = std::max(worst_off, std::abs(cov));
      }
    }
  }
  // FP32 outputs of a 12-term dot product: about 1e-6 relative; the sums above are in double.
  EXPECT_LT(worst_diag, 1e-3);
  EXPECT_LT(worst_off, 1e-3);
  EXPECT_LT(worst_mean, 1e-4);
}

TEST(Airbench, PatchWhiteningRefusesWhatDoesNotFit) {
  const Tensor images = correlated_images(2, 4);
  Conv2d wrong_kernel(3, 24, 3), wrong_width(3, 16, 2), no_bias(3, 24, 2, {.bias = false});
  for (Module* m : std::vector<Module*>{&wrong_kernel, &wrong_width, &no_bias}) {
    try {
      models::init_patch_whitening(*m, images);
      ADD_FAILURE() << m->describe() << " was accepted";
    } catch (const ShapeError& e) {
      EXPECT_NE(std::string(e.what()).find(m->describe()), std::string::npos) << e.what();
    }
  }
  Conv2d fits(3, 24, 2);
  EXPECT_THROW(models::init_patch_whitening(fits, Tensor::zeros({2, 3, 4})), ShapeError);
  EXPECT_THROW(models::init_patch_whitening(fits, images, 0.0f), ValueError);
  EXPECT_THROW(models::init_patch_whitening(fits, Tensor::zeros({1, 3, 2, 2})), ValueError);
}

}  // namespace
}  // namespace gpudl
