// The op and layer case table: one entry per layer configuration, read by the gradient checks,
// the GPU equivalence suite and gpudl_bench.
#include "op_cases.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <utility>
#include <vector>

#include "gpudl/core/nn/activation.h"
#include "gpudl/core/runtime/ops.h"
#include "gpudl/core/runtime/rng.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/concat.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/conv_transpose.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/layer_norm.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/recurrent.h"
#include "gpudl/layers/residual.h"
#include "gpudl/layers/sequential.h"
#include "gpudl/layers/time_delay.h"
#include "gpudl/layers/upsample.h"

namespace gpudl::cases {
namespace {

// Kinks of ReLU-like layers sit at 0: two gradient steps away, the differences stay smooth.
constexpr float kKinkMargin = 2 * kDefaultGradStep;

template <class Layer, class... Args>
std::function<std::unique_ptr<Module>()> maker(Args... args) {
  return [=] { return std::unique_ptr<Module>(new Layer(args...)); };
}

// A layer whose first parameter (a batch norm's scale) is set away from 1, so its gradient is
// exercised where a wrong formula would show.
template <class Layer>
std::function<std::unique_ptr<Module>()> with_scale(std::int64_t channels, std::vector<float> scale,
                                                     BatchNormOptions options = {}) {
  return [=] {
    auto m = std::make_unique<Layer>(channels, options);
    m->parameters()[0]->value.copy_from(Tensor::from_vector(scale, {channels}));
    return std::unique_ptr<Module>(std::move(m));
  };
}

std::vector<OpCase> build() {
  std::vector<OpCase> cases;
  // Every activation kind, picked up from the enumeration's count. alpha = 0.7: LeakyReLU's slope
  // and ELU's scale (a kink at 0 for ELU too), ignored by the others.
  for (int k = 0; k < nn::kActivationCount; ++k) {
    const auto kind = static_cast<nn::Activation>(k);
    const std::string name = kernels::activation_name(kind);
    auto make = [=] { return std::unique_ptr<Module>(new ActivationLayer(kind, 0.7f, name)); };
    cases.push_back({.name = name, .make = make, .input = {3, 4}, .bench_make = make, .bench_input = {1024, 1024},
                     .kink_margin = kKinkMargin});
  }
  cases.push_back({.name = "Scale", .make = maker<Scale>(-0.75f), .input = {3, 4}, .bench_input = {1024, 1024}});
  cases.push_back({.name = "Softmax", .make = maker<Softmax>(), .input = {3, 5}, .bench_input = {1024, 1000},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "LogSoftmax", .make = maker<LogSoftmax>(), .input = {3, 5}, .bench_input = {1024, 1000},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Linear_5x3", .make = maker<Linear>(5, 3), .input = {4, 5},
                   .bench_make = maker<Linear>(1024, 1024), .bench_input = {512, 1024},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Linear_3x2_no_bias", .make = maker<Linear>(3, 2, LinearOptions{.bias = false}),
                   .input = {2, 3}, .bench_make = maker<Linear>(1024, 1024, LinearOptions{.bias = false}),
                   .bench_input = {512, 1024}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Linear_over_sequences", .make = maker<Linear>(4, 3), .input = {5, 2, 4},
                   .gpu_tolerance = kReductionTolerance});
  // A fixed seed: the gradient check holds the mask by restoring the generator, and both devices
  // draw the same Philox mask.
  cases.push_back({.name = "Dropout", .make = maker<Dropout>(0.3f, std::uint64_t{1234}), .input = {4, 6},
                   .bench_input = {1024, 1024}});
  cases.push_back({.name = "BatchNorm1d", .make = with_scale<BatchNorm1d>(3, {0.5f, -1.5f, 2.0f}), .input = {6, 3},
                   .bench_make = maker<BatchNorm1d>(1024), .bench_input = {512, 1024},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "BatchNorm1d_sequence", .make = maker<BatchNorm1d>(2), .input = {3, 2, 4},
                   .bench_make = maker<BatchNorm1d>(64), .bench_input = {64, 64, 256},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "BatchNorm2d", .make = with_scale<BatchNorm2d>(3, {1.5f, -0.5f, 0.7f}),
                   .input = {2, 3, 3, 2}, .bench_make = maker<BatchNorm2d>(64), .bench_input = {128, 64, 32, 32},
                   .gpu_tolerance = kReductionTolerance});
  // SyncBatchNorm's own path (statistics through the process group, here of one rank: on a GPU
  // NCCL's), which must equal the plain layer's.
  cases.push_back({.name = "SyncBatchNorm1d", .make = with_scale<BatchNorm1d>(3, {0.5f, -1.5f, 2.0f}, {.sync = true}),
                   .input = {6, 3}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "SyncBatchNorm2d", .make = with_scale<BatchNorm2d>(3, {1.5f, -0.5f, 0.7f}, {.sync = true}),
                   .input = {2, 3, 3, 2}, .gpu_tolerance = kReductionTolerance});
  // Fused: batch norm + ReLU, and a residual block's batch norm + shortcut + ReLU in one pass.
  // With zero shifts the kinks sit at each channel's mean, which the inputs keep away from.
  constexpr float kChannelKinkMargin = 0.1f;
  cases.push_back({.name = "BatchNorm1d_relu",
                   .make = with_scale<BatchNorm1d>(3, {0.5f, -1.5f, 2.0f}, {.relu = true}), .input = {6, 3},
                   .channel_kink_margin = kChannelKinkMargin, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "BatchNorm2d_relu",
                   .make = with_scale<BatchNorm2d>(3, {1.5f, -0.5f, 0.7f}, {.relu = true}), .input = {2, 3, 3, 2},
                   .bench_make = maker<BatchNorm2d>(64, BatchNormOptions{.relu = true}),
                   .bench_input = {128, 64, 32, 32}, .channel_kink_margin = kChannelKinkMargin,
                   .gpu_tolerance = kReductionTolerance});
  // Both branches are batch norms of the same input, so the sum's kink is at the channel's mean
  // too (scales summing to 2, 0.5 and 0.5); the shortcut's gradient comes out of the fused pass.
  cases.push_back({.name = "Residual_batchnorm_relu",
                   .make =
                       [] {
                         auto main = with_scale<BatchNorm2d>(3, {1.5f, -0.5f, 0.7f})();
                         auto shortcut = with_scale<BatchNorm2d>(3, {0.5f, 1.0f, -0.2f})();
                         return std::unique_ptr<Module>(
                             new Residual(std::move(main), std::move(shortcut), ResidualOptions{.relu = true}));
                       },
                   .input = {2, 3, 3, 2},
                   .bench_make =
                       [] {
                         return std::unique_ptr<Module>(
                             new Residual(BatchNorm2d(64), BatchNorm2d(64), ResidualOptions{.relu = true}));
                       },
                   .bench_input = {128, 64, 32, 32}, .channel_kink_margin = kChannelKinkMargin,
                   .gpu_tolerance = kReductionTolerance, .low_precision_units = kStackedLowPrecisionUnits});
  cases.push_back({.name = "SyncBatchNorm2d_relu",
                   .make = with_scale<BatchNorm2d>(3, {1.5f, -0.5f, 0.7f}, {.sync = true, .relu = true}),
                   .input = {2, 3, 3, 2}, .channel_kink_margin = kChannelKinkMargin,
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "LayerNorm", .make = maker<LayerNorm>(5), .input = {4, 5},
                   .bench_make = maker<LayerNorm>(1024), .bench_input = {4096, 1024},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "LayerNorm_sequence_no_affine",
                   .make = maker<LayerNorm>(4, LayerNormOptions{.elementwise_affine = false}), .input = {3, 2, 4},
                   .bench_make = maker<LayerNorm>(768, LayerNormOptions{.elementwise_affine = false}),
                   .bench_input = {128, 32, 768}, .gpu_tolerance = kReductionTolerance});
  // Convolutions: padding, stride with groups, dilation without bias, depthwise "same", 1x1.
  cases.push_back({.name = "Conv2d_padded", .make = maker<Conv2d>(2, 3, 3, Conv2dOptions{.padding = 1}),
                   .input = {2, 2, 5, 4}, .bench_make = maker<Conv2d>(64, 64, 3, Conv2dOptions{.padding = 1}),
                   .bench_input = {32, 64, 32, 32}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Conv2d_strided_grouped",
                   .make = maker<Conv2d>(4, 2, 3, Conv2dOptions{.stride = 2, .padding = 1, .groups = 2}),
                   .input = {2, 4, 6, 5},
                   .bench_make = maker<Conv2d>(64, 128, 3, Conv2dOptions{.stride = 2, .padding = 1, .groups = 2}),
                   .bench_input = {32, 64, 32, 32}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Conv2d_dilated_no_bias",
                   .make = maker<Conv2d>(3, 2, 2, Conv2dOptions{.padding = 2, .dilation = 2, .bias = false}),
                   .input = {1, 3, 5, 6}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Conv2d_depthwise_same", .make = maker<Conv2d>(3, 3, 3, Conv2dOptions{.same = true, .groups = 3}),
                   .input = {2, 3, 4, 4}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Conv2d_pointwise", .make = maker<Conv2d>(3, 2, 1), .input = {2, 3, 3, 4},
                   .bench_make = maker<Conv2d>(256, 256, 1), .bench_input = {32, 256, 16, 16},
                   .gpu_tolerance = kReductionTolerance});
  // Transposed convolutions: stride with output_padding, groups, dilation without bias, an
  // output_padding past the stride (below the dilation: the input is zero-padded), 1x1.
  using CT = ConvTranspose2dOptions;
  cases.push_back({.name = "ConvTranspose2d_strided_output_padding",
                   .make = maker<ConvTranspose2d>(2, 3, 3, CT{.stride = 2, .padding = 1, .output_padding = 1}),
                   .input = {2, 2, 3, 4},
                   .bench_make = maker<ConvTranspose2d>(64, 32, 4, CT{.stride = 2, .padding = 1}),
                   .bench_input = {32, 64, 16, 16}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "ConvTranspose2d_grouped",
                   .make = maker<ConvTranspose2d>(4, 6, 3, CT{.stride = 2, .groups = 2}), .input = {2, 4, 3, 3},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "ConvTranspose2d_dilated_no_bias",
                   .make = maker<ConvTranspose2d>(3, 2, 2, CT{.padding = 1, .dilation = 2, .bias = false}),
                   .input = {1, 3, 4, 5}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "ConvTranspose2d_output_padding_past_stride",
                   .make = maker<ConvTranspose2d>(2, 2, 3,
                                                  CT{.stride = 2, .padding = 1, .output_padding = 2, .dilation = 3}),
                   .input = {1, 2, 3, 3}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "ConvTranspose2d_pointwise", .make = maker<ConvTranspose2d>(3, 2, 1),
                   .input = {2, 3, 3, 4}, .gpu_tolerance = kReductionTolerance});
  // Upsampling: nearest and bilinear, scale 2 and 3; a single row, where bilinear's two taps
  // along the height are one input.
  cases.push_back({.name = "Upsample_nearest_2", .make = maker<Upsample>(2, UpsampleMode::kNearest),
                   .input = {2, 3, 3, 4}, .bench_input = {32, 64, 32, 32}});
  cases.push_back({.name = "Upsample_nearest_3", .make = maker<Upsample>(3, UpsampleMode::kNearest),
                   .input = {1, 2, 2, 3}});
  cases.push_back({.name = "Upsample_bilinear_2", .make = maker<Upsample>(2, UpsampleMode::kBilinear),
                   .input = {2, 3, 3, 4}, .bench_input = {32, 64, 32, 32}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Upsample_bilinear_3", .make = maker<Upsample>(3, UpsampleMode::kBilinear),
                   .input = {1, 2, 3, 2}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Upsample_bilinear_single_row", .make = maker<Upsample>(2, UpsampleMode::kBilinear),
                   .input = {1, 1, 1, 3}, .gpu_tolerance = kReductionTolerance});
  // Max pooling on distinct values: no window ties, and no difference step crosses a kink.
  using Stride = std::optional<std::int64_t>;
  cases.push_back({.name = "MaxPool2d_2", .make = maker<MaxPool2d>(2, Stride{}, std::int64_t{0}),
                   .input = {2, 3, 4, 4}, .bench_input = {128, 64, 32, 32}, .distinct = true});
  cases.push_back({.name = "MaxPool2d_3_stride2_pad1", .make = maker<MaxPool2d>(3, Stride{2}, std::int64_t{1}),
                   .input = {2, 2, 5, 5}, .distinct = true});
  cases.push_back({.name = "MaxPool2d_3_overlapping", .make = maker<MaxPool2d>(3, Stride{1}, std::int64_t{0}),
                   .input = {1, 2, 4, 5}, .distinct = true});
  cases.push_back({.name = "MaxPool2d_2_stride3_skipping", .make = maker<MaxPool2d>(2, Stride{3}, std::int64_t{0}),
                   .input = {1, 2, 5, 5}, .distinct = true});
  cases.push_back({.name = "MaxPool2d_2_stride1_pad1", .make = maker<MaxPool2d>(2, Stride{1}, std::int64_t{1}),
                   .input = {1, 1, 3, 4}, .distinct = true});
  cases.push_back({.name = "AvgPool2d_2", .make = maker<AvgPool2d>(2, Stride{}, std::int64_t{0}), .input = {2, 3, 4, 4},
                   .bench_input = {128, 64, 32, 32}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "AvgPool2d_3_stride2_pad1", .make = maker<AvgPool2d>(3, Stride{2}, std::int64_t{1}),
                   .input = {2, 2, 5, 5}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "AvgPool2d_3_overlapping", .make = maker<AvgPool2d>(3, Stride{1}, std::int64_t{0}),
                   .input = {1, 2, 4, 5}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "AvgPool2d_2_stride3_skipping", .make = maker<AvgPool2d>(2, Stride{3}, std::int64_t{0}),
                   .input = {1, 2, 5, 5}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "GlobalAvgPool", .make = maker<GlobalAvgPool>(), .input = {2, 3, 3, 3},
                   .bench_input = {128, 512, 4, 4}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "TimeDelay_dilated", .make = maker<TimeDelay>(2, 3, 4, 2, nullptr), .input = {2, 2, 11},
                   .bench_make = maker<TimeDelay>(64, 64, 3, 1, nullptr), .bench_input = {64, 64, 256},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "TimeDelay_delay_line", .make = maker<TimeDelay>(1, 5, 7, 1, nullptr), .input = {3, 1, 9},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "RNN_tanh", .make = maker<RNN>(3, 4), .input = {3, 2, 3},
                   .bench_make = maker<RNN>(256, 256), .bench_input = {32, 32, 256},
                   .gpu_tolerance = kReductionTolerance, .f32_inside = true});
  cases.push_back({.name = "LSTM", .make = maker<LSTM>(3, 4), .input = {3, 2, 3},
                   .bench_make = maker<LSTM>(256, 256), .bench_input = {32, 32, 256},
                   .gpu_tolerance = kReductionTolerance, .f32_inside = true});
  cases.push_back({.name = "LSTM_3_layers_dropout",
                   .make = maker<LSTM>(2, 3, RecurrentOptions{.num_layers = 3, .dropout = 0.3f, .seed = 99}),
                   .input = {4, 2, 2}, .gpu_tolerance = kReductionTolerance, .f32_inside = true});
  cases.push_back({.name = "GRU_bidirectional", .make = maker<GRU>(3, 4, RecurrentOptions{.bidirectional = true}),
                   .input = {3, 2, 3}, .bench_make = maker<GRU>(256, 256, RecurrentOptions{.bidirectional = true}),
                   .bench_input = {32, 32, 256}, .gpu_tolerance = kReductionTolerance, .f32_inside = true});
  // 12 ids from 7: some repeat, so the scatter-add must accumulate.
  cases.push_back({.name = "Embedding", .make = maker<Embedding>(7, 3, nullptr), .input = {3, 4},
                   .bench_make = maker<Embedding>(10000, 256, nullptr), .bench_input = {32, 128},
                   .id_range = 7, .gpu_tolerance = kReductionTolerance, .dtypes = {DType::kF32}});
  // Containers, with their branches' gradients summed or joined.
  cases.push_back({.name = "Residual_identity",
                   .make = [] {
                     return std::unique_ptr<Module>(new Residual(Sequential{Linear(4, 4), Tanh(), Linear(4, 4)}));
                   },
                   .input = {3, 4}, .gpu_tolerance = kReductionTolerance,
                   .low_precision_units = kStackedLowPrecisionUnits});
  cases.push_back({.name = "Residual_projection",
                   .make = [] {
                     return std::unique_ptr<Module>(new Residual(Sequential{Linear(4, 6), Sigmoid()}, Linear(4, 6)));
                   },
                   .input = {3, 4}, .gpu_tolerance = kReductionTolerance,
                   .low_precision_units = kStackedLowPrecisionUnits});
  cases.push_back({.name = "Concat_of_branches",
                   .make = [] {
                     return std::unique_ptr<Module>(
                         new Concat(Linear(4, 2), Sequential{Linear(4, 3), Tanh()}, Sigmoid()));
                   },
                   .input = {3, 4}, .gpu_tolerance = kReductionTolerance,
                   .low_precision_units = kStackedLowPrecisionUnits});
  for (OpCase& c : cases) {
    if (!c.bench_make) c.bench_make = c.make;
  }
  return cases;
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = build();
  return cases;
}

double unit_roundoff(DType dtype) {
  return dtype == DType::kBF16 ? 1.0 / 256.0 : dtype == DType::kF16 ? 1.0 / 2048.0 : 0.0;
}

Precision precision_for(DType dtype) {
  return dtype == DType::kBF16 ? Precision::kBF16 : dtype == DType::kF16 ? Precision::kF16 : Precision::kF32;
}

std::vector<TypedCase> typed_cases(bool low_only) {
  std::vector<TypedCase> out;
  for (const OpCase& c : op_cases()) {
    for (DType t : c.dtypes) {
      if (!low_only || t != DType::kF32) out.push_back({c, t});
    }
  }
  return out;
}

std::string typed_name(const TypedCase& c) {
  return sanitize(c.op.name) + (c.dtype == DType::kF32 ? "" : std::string("_") + dtype_name(c.dtype));
}

namespace {
// Moves each value of x (n, c, ...) whose standardised value in its channel is within `margin`
// of 0 out to `margin`, again until none is (each move shifts the channel's mean a little).
void avoid_channel_means(Tensor& x, float margin) {
  const std::int64_t n = x.dim(0), c = x.dim(1), inner = x.numel() / std::max<std::int64_t>(n * c, 1);
  float* p = x.data<float>();
  for (std::int64_t ch = 0; ch < c; ++ch) {
    for (int round = 0; round < 100; ++round) {
      double sum = 0.0, sq = 0.0;
      for (std::int64_t b = 0; b < n; ++b) {
        for (std::int64_t i = 0; i < inner; ++i) sum += p[(b * c + ch) * inner + i];
      }
      const double mean = sum / static_cast<double>(n * inner);
      for (std::int64_t b = 0; b < n; ++b) {
        for (std::int64_t i = 0; i < inner; ++i) {
          const double d = p[(b * c + ch) * inner + i] - mean;
          sq += d * d;
        }
      }
      const double std = std::sqrt(sq / static_cast<double>(n * inner)), gap = 1.01 * margin * std;
      bool moved = false;
      for (std::int64_t b = 0; b < n; ++b) {
        for (std::int64_t i = 0; i < inner; ++i) {
          float& v = p[(b * c + ch) * inner + i];
          if (std::abs(v - mean) < gap) {
            v = static_cast<float>(v < mean ? mean - gap : mean + gap);
            moved = true;
          }
        }
      }
      if (!moved) break;
    }
  }
}
}  // namespace

Tensor make_input(const OpCase& c, const Shape& shape, std::uint64_t seed) {
  Generator gen(seed);
  Tensor x = Tensor::empty(shape);
  if (c.id_range > 0) {
    // Ids for the benchmark's larger vocabulary stay inside the small one's range too.
    ops::uniform_(x, 0.0f, static_cast<float>(c.id_range), gen);
    return x.cast(DType::kI32);
  }
  ops::uniform_(x, c.low, c.high, gen);
  if (c.distinct) {
    // A random permutation of values kDistinctSpacing apart, centred on 0.
    std::vector<std::int64_t> order(static_cast<std::size_t>(x.numel()));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    const float* keys = x.data<float>();
    std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return keys[a] < keys[b]; });
    std::vector<float> values(order.size());
    for (std::size_t rank = 0; rank < order.size(); ++rank) {
      values[static_cast<std::size_t>(order[rank])] =
          (static_cast<float>(rank) - static_cast<float>(order.size()) / 2.0f) * kDistinctSpacing;
    }
    return Tensor::from_vector(values, shape);
  }
  if (c.kink_margin > 0.0f) {
    float* p = x.data<float>();
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      if (std::abs(p[i]) < c.kink_margin) p[i] = p[i] < 0 ? -c.kink_margin : c.kink_margin;
    }
  }
  if (c.channel_kink_margin > 0.0f) avoid_channel_means(x, c.channel_kink_margin);
  return x;
}

Work fwd_bwd_work(Module& m, const Shape& input, const Shape& output) {
  std::vector<std::int64_t> sample(input.dims().begin() + 1, input.dims().end());
  const double batch = static_cast<double>(input.numel() == 0 ? 0 : input[0]);
  double params = 0;
  for (Parameter* p : m.parameters()) params += static_cast<double>(p->value.numel());
  const double forward_flops = batch * static_cast<double>(m.flops(Shape(sample)));
  const double forward_bytes = 4.0 * (static_cast<double>(input.numel() + output.numel()) + params);
  return {3.0 * forward_flops, 2.0 * forward_bytes};
}

std::string sanitize(const std::string& name) {
  std::string out = name;
  for (char& ch : out) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
    if (!ok) ch = '_';
  }
  return out;
}

}  // namespace gpudl::cases
