// The CIFAR-10 networks of cnn_cifar10 (and of gpudl_bench's training-step benchmark).
#pragma once

#include <string>

#include "gpudl/gpudl.h"

namespace examples {

// conv 3×3 (no bias: batch norm supplies the shift) + BatchNorm2d + ReLU.
inline gpudl::Sequential conv_bn_relu(std::int64_t in, std::int64_t out, std::int64_t stride = 1) {
  using namespace gpudl;
  return Sequential{Conv2d(in, out, 3, {.stride = stride, .padding = 1, .bias = false}), BatchNorm2d(out), ReLU()};
}

// `quick`: three conv-BN-ReLU stages, each followed by 2×2 max-pooling (32-64-128 channels),
// and a linear classifier on the 128×4×4 features: about 0.11 M parameters and 21 MFLOP per
// image, sized for a 2-core CPU.
inline gpudl::Sequential quick_cnn() {
  using namespace gpudl;
  return Sequential{conv_bn_relu(3, 32),   MaxPool2d(2), conv_bn_relu(32, 64), MaxPool2d(2),
                    conv_bn_relu(64, 128), MaxPool2d(2), Flatten(),            Linear(2048, 10)};
}

// A basic residual block (He et al. 2016): two 3×3 convolutions with batch norm, and a 1×1
// projection shortcut when the shape changes; ReLU after the sum.
inline gpudl::Sequential basic_block(std::int64_t in, std::int64_t out, std::int64_t stride) {
  using namespace gpudl;
  Sequential main{Conv2d(in, out, 3, {.stride = stride, .padding = 1, .bias = false}), BatchNorm2d(out), ReLU(),
                  Conv2d(out, out, 3, {.padding = 1, .bias = false}), BatchNorm2d(out)};
  if (stride == 1 && in == out) return Sequential{Residual(std::move(main)), ReLU()};
  return Sequential{Residual(std::move(main), Sequential{Conv2d(in, out, 1, {.stride = stride, .bias = false}),
                                                         BatchNorm2d(out)}),
                    ReLU()};
}

// `resnet`: a ResNet-18-style network for 32×32 inputs with one basic block per stage
// (64-128-256-512 channels): about 4.9 M parameters and 0.56 GFLOP per image, for GPUs.
inline gpudl::Sequential resnet() {
  using namespace gpudl;
  return Sequential{conv_bn_relu(3, 64),      basic_block(64, 64, 1),   basic_block(64, 128, 2),
                    basic_block(128, 256, 2), basic_block(256, 512, 2), GlobalAvgPool(),
                    Linear(512, 10)};
}

// Throws std::invalid_argument for an unknown name.
inline gpudl::Sequential cifar_model(const std::string& name) {
  if (name == "quick") return quick_cnn();
  if (name == "resnet") return resnet();
  throw std::invalid_argument("unknown --model '" + name + "': expected quick or resnet");
}

}  // namespace examples
