// The CIFAR-10 model zoo shared by cnn_cifar10, gpudl_bench and the tests: `quick` for CPUs,
// `resnet` (ResNet-18-style) for GPUs, and their building blocks.
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/layers/sequential.h"

namespace gpudl::models {

// conv 3×3 (no bias: batch norm supplies the shift) + BatchNorm2d with its ReLU fused.
Sequential conv_bn_relu(std::int64_t in, std::int64_t out, std::int64_t stride = 1);

// `quick`: three conv-BN-ReLU stages, each followed by 2×2 max-pooling (32-64-128 channels),
// and a linear classifier on the 128×4×4 features: about 0.11 M parameters and 21 MFLOP per
// image, sized for a 2-core CPU.
Sequential quick_cnn();

// A basic residual block (He et al. 2016): two 3×3 convolutions with batch norm, and a 1×1
// projection shortcut when the shape changes; ReLU after the sum. The sum and the ReLU run in
// the second batch norm's pass (Residual's fusion).
Sequential basic_block(std::int64_t in, std::int64_t out, std::int64_t stride);

// `resnet`: a ResNet-18-style network for 32×32 inputs with one basic block per stage
// (64-128-256-512 channels): about 4.9 M parameters and 0.56 GFLOP per image, for GPUs.
Sequential resnet();

// "quick" or "resnet"; throws ValueError naming any other name.
Sequential cifar_model(const std::string& name);

}  // namespace gpudl::models
