// The op and layer case table: one entry per layer configuration, read by the gradient checks,
// the GPU equivalence suite and gpudl_bench.
#include "op_cases.h"

#include <cmath>
#include <utility>

#include "gpudl/core/nn/activation.h"
#include "gpudl/core/runtime/ops.h"
#include "gpudl/core/runtime/rng.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/layer_norm.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/recurrent.h"
#include "gpudl/layers/time_delay.h"

namespace gpudl::cases {
namespace {

// Kinks of ReLU-like layers sit at 0: two gradient steps away, the differences stay smooth.
constexpr float kKinkMargin = 2 * kDefaultGradStep;

template <class Layer, class... Args>
std::function<std::unique_ptr<Module>()> maker(Args... args) {
  return [=] { return std::unique_ptr<Module>(new Layer(args...)); };
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
  // A fixed seed: the gradient check holds the mask by restoring the generator, and both devices
  // draw the same Philox mask.
  cases.push_back({.name = "Dropout", .make = maker<Dropout>(0.3f, std::uint64_t{1234}), .input = {4, 6},
                   .bench_input = {1024, 1024}});
  cases.push_back({.name = "BatchNorm1d", .make = maker<BatchNorm1d>(3), .input = {6, 3},
                   .bench_make = maker<BatchNorm1d>(1024), .bench_input = {512, 1024},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "BatchNorm1d_sequence", .make = maker<BatchNorm1d>(2), .input = {3, 2, 4},
                   .bench_make = maker<BatchNorm1d>(64), .bench_input = {64, 64, 256},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "BatchNorm2d", .make = maker<BatchNorm2d>(3), .input = {4, 3, 3, 3},
                   .bench_make = maker<BatchNorm2d>(64), .bench_input = {128, 64, 32, 32},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "LayerNorm", .make = maker<LayerNorm>(5), .input = {4, 5},
                   .bench_make = maker<LayerNorm>(1024), .bench_input = {4096, 1024},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "LayerNorm_sequence_no_affine",
                   .make = maker<LayerNorm>(4, LayerNormOptions{.elementwise_affine = false}), .input = {3, 2, 4},
                   .bench_make = maker<LayerNorm>(768, LayerNormOptions{.elementwise_affine = false}),
                   .bench_input = {128, 32, 768}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Conv2d_3x3_pad1", .make = maker<Conv2d>(2, 3, 3, Conv2dOptions{.padding = 1}),
                   .input = {2, 2, 5, 5}, .bench_make = maker<Conv2d>(64, 64, 3, Conv2dOptions{.padding = 1}),
                   .bench_input = {32, 64, 32, 32}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Conv2d_strided_grouped",
                   .make = maker<Conv2d>(4, 6, 3, Conv2dOptions{.stride = 2, .padding = 1, .groups = 2}),
                   .input = {2, 4, 6, 6},
                   .bench_make = maker<Conv2d>(64, 128, 3, Conv2dOptions{.stride = 2, .padding = 1, .groups = 2}),
                   .bench_input = {32, 64, 32, 32}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "MaxPool2d_2", .make = maker<MaxPool2d>(2), .input = {2, 2, 4, 4},
                   .bench_input = {128, 64, 32, 32}});
  cases.push_back({.name = "MaxPool2d_3_stride2_pad1", .make = maker<MaxPool2d>(3, std::int64_t{2}, std::int64_t{1}),
                   .input = {2, 2, 5, 5}, .bench_input = {128, 64, 32, 32}});
  cases.push_back({.name = "AvgPool2d_2", .make = maker<AvgPool2d>(2), .input = {2, 2, 4, 4},
                   .bench_input = {128, 64, 32, 32}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "GlobalAvgPool", .make = maker<GlobalAvgPool>(), .input = {2, 3, 4, 4},
                   .bench_input = {128, 512, 4, 4}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "TimeDelay_3to4_taps3", .make = maker<TimeDelay>(3, 4, 3, 1, nullptr), .input = {2, 3, 7},
                   .bench_make = maker<TimeDelay>(64, 64, 3, 1, nullptr), .bench_input = {64, 64, 256},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "RNN_tanh", .make = maker<RNN>(3, 4), .input = {3, 2, 3},
                   .bench_make = maker<RNN>(256, 256), .bench_input = {32, 32, 256},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "LSTM", .make = maker<LSTM>(3, 4), .input = {3, 2, 3},
                   .bench_make = maker<LSTM>(256, 256), .bench_input = {32, 32, 256},
                   .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "GRU_bidirectional", .make = maker<GRU>(3, 4, RecurrentOptions{.bidirectional = true}),
                   .input = {3, 2, 3}, .bench_make = maker<GRU>(256, 256, RecurrentOptions{.bidirectional = true}),
                   .bench_input = {32, 32, 256}, .gpu_tolerance = kReductionTolerance});
  cases.push_back({.name = "Embedding", .make = maker<Embedding>(7, 4, nullptr), .input = {3, 2},
                   .bench_make = maker<Embedding>(10000, 256, nullptr), .bench_input = {32, 128},
                   .id_range = 7, .gpu_tolerance = kReductionTolerance});
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

Tensor make_input(const OpCase& c, const Shape& shape, std::uint64_t seed) {
  Generator gen(seed);
  Tensor x = Tensor::empty(shape);
  if (c.id_range > 0) {
    // Ids for the benchmark's larger vocabulary stay inside the small one's range too.
    ops::uniform_(x, 0.0f, static_cast<float>(c.id_range), gen);
    return x.cast(DType::kI32);
  }
  ops::uniform_(x, c.low, c.high, gen);
  if (c.kink_margin > 0.0f) {
    float* p = x.data<float>();
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      if (std::abs(p[i]) < c.kink_margin) p[i] = p[i] < 0 ? -c.kink_margin : c.kink_margin;
    }
  }
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
