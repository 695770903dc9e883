// gpudl_bench's CNN cases: convolutions of the resnet model's CIFAR shapes (TFLOP/s), pooling
// and batch-norm bandwidth (GB/s), and whole training steps of the CNN examples (images/s).
#include <string>

#include "bench_util.h"
#include "gpudl/layers/models/cifar.h"
#include "gpudl/gpudl.h"

namespace bench {
namespace {

using gpudl::Device;
using gpudl::DType;
using gpudl::Precision;
using gpudl::Tensor;

struct ConvCase {
  std::int64_t cin, cout, kernel, stride, size;  // size: input height = width
};

// The distinct convolutions of models::resnet() on 32×32 inputs.
const ConvCase kResnetConvs[] = {{3, 64, 3, 1, 32},    {64, 64, 3, 1, 32},   {64, 128, 3, 2, 32},
                                 {128, 128, 3, 1, 16}, {64, 128, 1, 2, 32},  {128, 256, 3, 2, 16},
                                 {256, 256, 3, 1, 8},  {256, 512, 3, 2, 8},  {512, 512, 3, 1, 4}};

void conv(benchmark::State& state, Device device, ConvCase c, bool backward) {
  const std::int64_t batch = state.range(0);
  gpudl::manual_seed(1);
  gpudl::Conv2d layer(c.cin, c.cout, c.kernel,
                      {.stride = c.stride, .padding = c.kernel / 2, .bias = false});
  layer.to(device);
  const Tensor x = random_tensor({batch, c.cin, c.size, c.size}, device, 2);
  const Tensor y = layer.forward(x);
  const Tensor dy = random_tensor(y.shape(), device, 3);
  time_iterations(state, device, [&] {
    layer.forward(x);
    if (backward) layer.backward(dy);
  });
  const double macs = static_cast<double>(batch * c.cout * y.dim(2) * y.dim(3) * c.cin * c.kernel * c.kernel);
  // Backward is two products of the forward's size (data and filter gradients).
  const double flops = 2.0 * macs * (backward ? 3.0 : 1.0);
  state.counters["TFLOPs"] =
      benchmark::Counter(flops * 1e-12 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(backward ? "forward+backward " : "forward ") + device.str());
}

// Bytes read and written once each: the floor any pooling or batch-norm pass must move.
void bandwidth(benchmark::State& state, Device device, bool pool) {
  const std::int64_t batch = state.range(0);
  const Tensor x = random_tensor({batch, 64, 32, 32}, device, 4);
  gpudl::MaxPool2d max_pool(2);
  gpudl::BatchNorm2d bn(64);
  bn.to(device);
  double bytes = 0;
  time_iterations(state, device, [&] {
    if (pool) {
      max_pool.forward(x);
    } else {
      bn.forward(x);
    }
  });
  bytes = static_cast<double>(x.nbytes()) * (pool ? 1.25 : 2.0);  // pool writes a quarter of its input
  state.counters["GB"] = benchmark::Counter(bytes * 1e-9 * static_cast<double>(state.iterations()),
                                            benchmark::Counter::kIsRate);
  state.SetLabel(std::string(pool ? "max_pool 2x2 forward " : "batch_norm2d train forward ") + device.str());
}

// One SGD (Nesterov) step of a CNN example on a fixed batch, in blocks of 20 steps with one
// synchronisation per block — the protocol of bench/reference/cnn_cifar10.py.
constexpr int kStepsPerBlock = 20;

void cnn_step(benchmark::State& state, Device device, std::string model, Precision precision) {
  using namespace gpudl;
  const std::int64_t batch = state.range(0);
  manual_seed(1);
  const bool lenet = model == "lenet";
  Sequential net = lenet ? Sequential{Conv2d(1, 6, 5, {.padding = 2}), ReLU(), MaxPool2d(2), Conv2d(6, 16, 5), ReLU(),
                                      MaxPool2d(2), Flatten(), Linear(400, 120), ReLU(), Linear(120, 84), ReLU(),
                                      Linear(84, 10)}
                         : models::cifar_model(model);
  net.to(device);
  net.set_precision(precision);
  // As in a training loop (and PyTorch, whose input has no requires_grad): no dL/dx for the data.
  net.set_input_grad(false);
  std::unique_ptr<Optimizer> opt;
  if (lenet) {
    opt = std::make_unique<Adam>(net.parameters(), AdamOptions{.lr = 2e-3});
  } else {
    opt = std::make_unique<SGD>(net.parameters(),
                                SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
  }
  CrossEntropyLoss loss;
  const Tensor x = random_tensor(lenet ? Shape{batch, 1, 28, 28} : Shape{batch, 3, 32, 32}, device, 5);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(batch));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 10);
  const Tensor y = Tensor::from_vector(labels, {batch}, device);
  time_iterations(state, device, [&] {
    for (int i = 0; i < kStepsPerBlock; ++i) {
      opt->zero_grad();
      loss.forward(net.forward(x), y);
      net.backward(loss.backward());
      opt->step();
    }
  });
  state.counters["images_per_second"] = benchmark::Counter(
      static_cast<double>(batch * kStepsPerBlock) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(model + " training step, " + precision_name(precision) + ", " + device.str());
}

void timing_mode(benchmark::internal::Benchmark* b, Device device) {
  if (device.is_cuda()) {
    b->UseManualTime();
  } else {
    b->UseRealTime();
  }
}

}  // namespace

void register_cnn_benchmarks(const std::vector<Device>& devices) {
  for (Device d : devices) {
    const std::string dev = d.is_cuda() ? "cuda" : "cpu";
    const std::int64_t batch = d.is_cuda() ? 512 : 8;
    for (const ConvCase& c : kResnetConvs) {
      const std::string shape = std::to_string(c.cin) + "x" + std::to_string(c.cout) + "_k" + std::to_string(c.kernel) +
                                "_s" + std::to_string(c.stride) + "_" + std::to_string(c.size);
      for (bool backward : {false, true}) {
        auto* b = benchmark::RegisterBenchmark(("conv/" + dev + (backward ? "/fwd_bwd/" : "/fwd/") + shape).c_str(),
                                               conv, d, c, backward)
                      ->Arg(batch)
                      ->Unit(benchmark::kMillisecond);
        timing_mode(b, d);
      }
    }
    for (bool pool : {true, false}) {
      auto* b = benchmark::RegisterBenchmark(((pool ? "max_pool/" : "batch_norm/") + dev).c_str(), bandwidth, d, pool)
                    ->Arg(d.is_cuda() ? 512 : 32)
                    ->Unit(benchmark::kMicrosecond);
      timing_mode(b, d);
    }
    const std::vector<std::pair<std::string, std::int64_t>> steps =
        d.is_cuda() ? std::vector<std::pair<std::string, std::int64_t>>{{"airbench", 1024}, {"resnet", 512},
                                                                        {"quick", 512},     {"quick", 128},
                                                                        {"lenet", 128}}
                    : std::vector<std::pair<std::string, std::int64_t>>{{"quick", 128}, {"lenet", 128}};
    // FP32 as "cnn_step/<dev>/<model>", the same step in bf16 as "cnn_step/<dev>/<model>/bf16".
    for (const auto& [model, b] : steps) {
      for (Precision p : {Precision::kF32, Precision::kBF16}) {
        const std::string suffix = p == Precision::kF32 ? "" : std::string("/") + precision_name(p);
        const std::string name = "cnn_step/" + dev + "/" + model + suffix;
        auto* r = benchmark::RegisterBenchmark(name.c_str(), cnn_step, d, model, p)
                      ->Arg(b)
                      ->Unit(benchmark::kMillisecond)
                      ->MinTime(2.0);
        timing_mode(r, d);
      }
    }
  }
}

}  // namespace bench
