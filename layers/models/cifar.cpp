// The CIFAR-10 model zoo: quick, resnet, airbench and their blocks, and airbench's whitening.
#include "gpudl/layers/models/cifar.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "gpudl/core/runtime/error.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/residual.h"

namespace gpudl::models {

Sequential conv_bn_relu(std::int64_t in, std::int64_t out, std::int64_t stride) {
  return Sequential{Conv2d(in, out, 3, {.stride = stride, .padding = 1, .bias = false}),
                    BatchNorm2d(out, {.relu = true})};
}

Sequential quick_cnn(std::int64_t classes, std::int64_t image_size) {
  if (classes < 1 || image_size < 8 || image_size % 8 != 0) {
    throw ValueError("quick: needs at least 1 class and an image size that is a multiple of 8, got " +
                     std::to_string(classes) + " classes of " + std::to_string(image_size) + "-pixel images");
  }
  const std::int64_t side = image_size / 8;  // after three 2 x 2 poolings
  return Sequential{conv_bn_relu(3, 32),   MaxPool2d(2), conv_bn_relu(32, 64), MaxPool2d(2),
                    conv_bn_relu(64, 128), MaxPool2d(2), Flatten(),            Linear(128 * side * side, classes)};
}

Sequential basic_block(std::int64_t in, std::int64_t out, std::int64_t stride) {
  Sequential main{Conv2d(in, out, 3, {.stride = stride, .padding = 1, .bias = false}),
                  BatchNorm2d(out, {.relu = true}), Conv2d(out, out, 3, {.padding = 1, .bias = false}),
                  BatchNorm2d(out)};
  if (stride == 1 && in == out) return Sequential{Residual(std::move(main), {.relu = true})};
  return Sequential{Residual(std::move(main),
                             Sequential{Conv2d(in, out, 1, {.stride = stride, .bias = false}), BatchNorm2d(out)},
                             {.relu = true})};
}

Sequential resnet(std::int64_t classes) {
  if (classes < 1) throw ValueError("resnet: needs at least 1 class, got " + std::to_string(classes));
  return Sequential{conv_bn_relu(3, 64),      basic_block(64, 64, 1),   basic_block(64, 128, 2),
                    basic_block(128, 256, 2), basic_block(256, 512, 2), GlobalAvgPool(),
                    Linear(512, classes)};
}

namespace {

// airbench's batch norms keep 0.6 of the running statistics at each step (its "momentum 0.6"
// is passed to PyTorch as 1 - 0.6), and an eps of 1e-12.
constexpr float kAirbenchMomentum = 0.4f;
constexpr float kAirbenchEps = 1e-12f;

// The first min(in, out) filters of a 3×3 convolution become identities on their own channel.
void dirac_init(Conv2d& conv, std::int64_t in, std::int64_t out) {
  Tensor& w = conv.parameters()[0]->value;
  std::vector<float> v = w.to_vector<float>();
  for (std::int64_t o = 0; o < std::min(in, out); ++o) {
    std::fill_n(v.begin() + o * in * 9, in * 9, 0.0f);
    v[static_cast<std::size_t>((o * in + o) * 9 + 4)] = 1.0f;
  }
  w.copy_from(Tensor::from_vector(v, w.shape()));
}

// Eigen-decomposition of the symmetric n×n matrix `a` (row-major, destroyed) by cyclic Jacobi
// rotations: eigenvalues, and eigenvectors as the columns of `vectors`. Plenty for airbench's
// 12×12 patch covariance; sweeps stop when the off-diagonal mass is at rounding level.
void symmetric_eigen(std::vector<double>& a, std::size_t n, std::vector<double>& values,
                     std::vector<double>& vectors) {
  vectors.assign(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) vectors[i * n + i] = 1.0;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0.0, diag = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      diag += a[i * n + i] * a[i * n + i];
      for (std::size_t j = i + 1; j < n; ++j) off += a[i * n + j] * a[i * n + j];
    }
    if (off <= 1e-30 * diag) break;
    for (std::size_t p = 0; p < n; ++p) {
      for (std::size_t q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (apq == 0.0) continue;
        // The rotation that zeroes a[p][q] (Golub & Van Loan's stable form).
        const double theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (std::size_t k = 0; k < n; ++k) {
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (std::size_t k = 0; k < n; ++k) {
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (std::size_t k = 0; k < n; ++k) {
          const double vkp = vectors[k * n + p], vkq = vectors[k * n + q];
          vectors[k * n + p] = c * vkp - s * vkq;
          vectors[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  values.resize(n);
  for (std::size_t i = 0; i < n; ++i) values[i] = a[i * n + i];
}

}  // namespace

Sequential airbench_group(std::int64_t in, std::int64_t out) {
  Conv2d first(in, out, 3, {.padding = 1, .bias = false}), second(out, out, 3, {.padding = 1, .bias = false});
  dirac_init(first, in, out);
  dirac_init(second, out, out);
  return Sequential{std::move(first), MaxPool2d(2),  BatchNorm2d(out, {.eps = kAirbenchEps, .momentum = kAirbenchMomentum}),
                    GELU(),           std::move(second), BatchNorm2d(out, {.eps = kAirbenchEps, .momentum = kAirbenchMomentum}),
                    GELU()};
}

Sequential airbench(std::int64_t classes) {
  if (classes < 1) throw ValueError("airbench: needs at least 1 class, got " + std::to_string(classes));
  return Sequential{Conv2d(3, 24, 2),          GELU(),       airbench_group(24, 64), airbench_group(64, 256),
                    airbench_group(256, 256), MaxPool2d(3), Flatten(),              Linear(256, classes, {.bias = false}),
                    Scale(1.0f / 9.0f)};
}

void init_patch_whitening(Module& whiten, const Tensor& images, float eps) {
  if (!(eps > 0.0f)) throw ValueError("init_patch_whitening: eps must be > 0, got " + std::to_string(eps));
  const auto* conv = dynamic_cast<const Conv2d*>(&whiten);
  if (images.ndim() != 4 || images.dtype() != DType::kF32 || conv == nullptr) {
    throw ShapeError("init_patch_whitening: expected f32 images (N, C, H, W) and a Conv2d, got " +
                     images.shape().str() + " and " + whiten.describe());
  }
  const std::int64_t n = images.dim(0), c = images.dim(1), h = images.dim(2), w = images.dim(3);
  const std::size_t d = static_cast<std::size_t>(c * 4);
  std::vector<Parameter*> params = whiten.parameters();
  const Shape want{2 * c * 4, c, 2, 2};
  if (params.empty() || params[0]->value.shape() != want || params.size() != 2 || h < 2 || w < 2) {
    throw ShapeError("init_patch_whitening: " + whiten.describe() + " does not fit images " + images.shape().str() +
                     ": need a 2x2 convolution with bias from " + std::to_string(c) + " to " +
                     std::to_string(2 * c * 4) + " channels on images of at least 2x2 pixels");
  }
  const std::int64_t patches = n * (h - 1) * (w - 1);
  if (patches < 2) throw ValueError("init_patch_whitening: fewer than two patches in " + images.shape().str());
  const std::vector<float> x = images.to(Device::cpu()).to_vector<float>();
  // Sums of each patch vector (index ch·4 + dy·2 + dx, the weights' own layout) and of its
  // outer products, in double.
  std::vector<double> sum(d, 0.0), outer(d * d, 0.0), patch(d);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t y = 0; y + 1 < h; ++y) {
      for (std::int64_t xx = 0; xx + 1 < w; ++xx) {
        for (std::int64_t ch = 0; ch < c; ++ch) {
          const std::size_t base = static_cast<std::size_t>(((i * c + ch) * h + y) * w + xx);
          patch[static_cast<std::size_t>(ch * 4 + 0)] = x[base];
          patch[static_cast<std::size_t>(ch * 4 + 1)] = x[base + 1];
          patch[static_cast<std::size_t>(ch * 4 + 2)] = x[base + static_cast<std::size_t>(w)];
          patch[static_cast<std::size_t>(ch * 4 + 3)] = x[base + static_cast<std::size_t>(w) + 1];
        }
        for (std::size_t a = 0; a < d; ++a) {
          sum[a] += patch[a];
          for (std::size_t b = a; b < d; ++b) outer[a * d + b] += patch[a] * patch[b];
        }
      }
    }
  }
  const double count = static_cast<double>(patches);
  std::vector<double> mean(d), cov(d * d);
  for (std::size_t a = 0; a < d; ++a) mean[a] = sum[a] / count;
  for (std::size_t a = 0; a < d; ++a) {
    for (std::size_t b = a; b < d; ++b) {
      cov[a * d + b] = cov[b * d + a] = (outer[a * d + b] - count * mean[a] * mean[b]) / (count - 1.0);
    }
  }
  std::vector<double> values, vectors;
  symmetric_eigen(cov, d, values, vectors);
  // Largest eigenvalue first, so filter 0 is the strongest direction.
  std::vector<std::size_t> order(d);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return values[a] > values[b]; });
  std::vector<float> weight(2 * d * d), bias(2 * d);
  for (std::size_t k = 0; k < d; ++k) {
    const std::size_t e = order[k];
    const double scale = 1.0 / std::sqrt(std::max(values[e], 0.0) + eps);
    double shift = 0.0;
    for (std::size_t a = 0; a < d; ++a) {
      const double v = vectors[a * d + e] * scale;
      weight[k * d + a] = static_cast<float>(v);
      weight[(d + k) * d + a] = static_cast<float>(-v);
      shift -= v * mean[a];
    }
    bias[k] = static_cast<float>(shift);
    bias[d + k] = static_cast<float>(-shift);
  }
  const Device device = params[0]->value.device();
  params[0]->value.copy_from(Tensor::from_vector(weight, want).to(device));
  params[1]->value.copy_from(Tensor::from_vector(bias, {static_cast<std::int64_t>(2 * d)}).to(device));
}

namespace {

// Parameter `which` of every batch norm in airbench's groups.
std::vector<Parameter*> airbench_norm_parameters(Sequential& net, std::size_t which) {
  std::vector<Parameter*> out;
  for (std::size_t i = 0; i < net.size(); ++i) {
    auto* group = dynamic_cast<Sequential*>(&net[i]);
    if (group == nullptr) continue;
    for (std::size_t j = 0; j < group->size(); ++j) {
      if (auto* bn = dynamic_cast<BatchNorm1d*>(&(*group)[j])) out.push_back(bn->parameters()[which]);
    }
  }
  return out;
}

}  // namespace

std::vector<Parameter*> airbench_trained_parameters(Sequential& net) {
  std::vector<Parameter*> frozen = airbench_norm_parameters(net, 0);  // the scales
  if (net.size() > 0) frozen.push_back(net[0].parameters()[0]);       // the whitening filters
  std::vector<Parameter*> trained;
  for (Parameter* p : net.parameters()) {
    if (std::find(frozen.begin(), frozen.end(), p) == frozen.end()) trained.push_back(p);
  }
  return trained;
}

std::vector<Parameter*> airbench_norm_biases(Sequential& net) { return airbench_norm_parameters(net, 1); }

Sequential cifar_model(const std::string& name, std::int64_t classes, std::int64_t image_size) {
  if (name == "airbench" && image_size != 32) {
    throw ValueError("airbench takes 32 x 32 images (its last pooling is fixed), got " + std::to_string(image_size));
  }
  if (name == "resnet" && image_size < 8) {
    throw ValueError("resnet needs images of at least 8 x 8 pixels, got " + std::to_string(image_size));
  }
  if (name == "quick") return quick_cnn(classes, image_size);
  if (name == "resnet") return resnet(classes);
  if (name == "airbench") return airbench(classes);
  throw ValueError("unknown --model '" + name + "': expected quick, resnet or airbench");
}

}  // namespace gpudl::models
