// The CIFAR-10 model zoo shared by cnn_cifar10, gpudl_bench and the tests: `quick` for CPUs,
// `resnet` (ResNet-18-style) for GPUs, `airbench` for the speed-run recipe, and their blocks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpudl/layers/sequential.h"

namespace gpudl::models {

// conv 3×3 (no bias: batch norm supplies the shift) + BatchNorm2d with its ReLU fused.
Sequential conv_bn_relu(std::int64_t in, std::int64_t out, std::int64_t stride = 1);

// `quick`: three conv-BN-ReLU stages, each followed by 2×2 max-pooling (32-64-128 channels),
// and a linear classifier on the 128×4×4 features: about 0.11 M parameters and 21 MFLOP per
// image, sized for a 2-core CPU. Other class counts and image sizes (multiples of 8) change
// the classifier's shape only; throws ValueError for others.
Sequential quick_cnn(std::int64_t classes = 10, std::int64_t image_size = 32);

// A basic residual block (He et al. 2016): two 3×3 convolutions with batch norm, and a 1×1
// projection shortcut when the shape changes; ReLU after the sum. The sum and the ReLU run in
// the second batch norm's pass (Residual's fusion).
Sequential basic_block(std::int64_t in, std::int64_t out, std::int64_t stride);

// `resnet`: a ResNet-18-style network for 32×32 inputs with one basic block per stage
// (64-128-256-512 channels): about 4.9 M parameters and 0.56 GFLOP per image, for GPUs.
Sequential resnet(std::int64_t classes = 10);

// One group of `airbench`: conv 3×3 → max-pool 2 → batch norm → GELU → conv 3×3 → batch
// norm → GELU (no conv biases; the batch norms keep 0.6 of their running statistics per step).
Sequential airbench_group(std::int64_t in, std::int64_t out);

// `airbench`: the network of Keller Jordan's CIFAR-10 speed runs (airbench94, 2024), built
// here from its published description: a 2×2 convolution to 24 channels meant to be set by
// init_patch_whitening and kept fixed, GELU, groups of 64, 256 and 256 channels (32 → 31 →
// 15 → 7 → 3 pixels), a 3×3 max-pool to one pixel, a linear classifier without bias and
// logits scaled by 1/9: about 1.97 M parameters and 0.24 GFLOP per image. The 3×3 convolutions start as partial identities: the first
// min(in, out) filters of each pass their own input channel through (a Dirac kernel).
Sequential airbench(std::int64_t classes = 10);

// Sets `whiten` (a 2×2 convolution from C channels to 2 C·4 outputs, as airbench's first layer)
// to whiten the 2×2 patches of `images` (N, C, H, W; f32 on the CPU, normalised as the network
// will see them): filter k is the k-th eigenvector of the patches' covariance divided by
// sqrt(eigenvalue + eps), filter C·4 + k its negation, so that both signs survive a GELU; the
// bias centres the patches. Throws ShapeError when the shapes do not fit, ValueError for
// eps <= 0 or fewer than two patches.
void init_patch_whitening(Module& whiten, const Tensor& images, float eps = 5e-4f);

// airbench's parameters that its recipe trains: all but the whitening filters and the batch
// norms' scales, which stay at their initial values (the scales at 1).
std::vector<Parameter*> airbench_trained_parameters(Sequential& net);
// airbench's batch-norm biases, which its recipe trains with 64 times the learning rate.
std::vector<Parameter*> airbench_norm_biases(Sequential& net);

// "quick", "resnet" or "airbench" for `classes` classes of image_size x image_size images
// (resnet takes any size from 8, quick multiples of 8, airbench 32 only); throws ValueError
// naming any other name, or the size a model cannot take.
Sequential cifar_model(const std::string& name, std::int64_t classes = 10, std::int64_t image_size = 32);

}  // namespace gpudl::models
