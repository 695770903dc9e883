// gpudl_bench: the memory pool against its raw upstream, our GEMM against direct BLAS calls,
// and host<->device copy bandwidth (pinned and pageable). GPU cases register only where a
// GPU is usable. Run with --benchmark_format=json for machine-readable results.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gpudl/config.h"
#include "gpudl/gpudl.h"
#include "bench_util.h"

#if GPUDL_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif

namespace {

using gpudl::Context;
using gpudl::Device;
using gpudl::DType;
using gpudl::Precision;
using gpudl::Tensor;

// ---------------------------------------------------------------------------------------------
// memory pool

void pool_alloc_free(benchmark::State& state, Device device) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  Context& ctx = Context::get(device);
  gpudl::MemoryPool& pool = ctx.memory_pool();
  void* stream = ctx.compute_stream().handle();
  pool.deallocate(pool.allocate(bytes, stream));  // warm the cache, as a training loop would
  for (auto _ : state) {
    void* p = pool.allocate(bytes, stream);
    benchmark::DoNotOptimize(p);
    pool.deallocate(p);
  }
  state.SetLabel(device.str() + " pool");
}

void upstream_alloc_free(benchmark::State& state, Device device) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  // The pool's own upstream: cudaMalloc + cudaFree on a GPU, through the public interface.
  const std::unique_ptr<gpudl::PoolUpstream> cuda =
      device.is_cuda() ? gpudl::make_cuda_device_upstream(device.index()) : nullptr;
  for (auto _ : state) {
    if (device.is_cuda()) {
      void* p = cuda->allocate(bytes);
      benchmark::DoNotOptimize(p);
      cuda->deallocate(p, bytes);
    } else {
      void* p = std::malloc(bytes);
      benchmark::DoNotOptimize(p);
      static_cast<volatile char*>(p)[0] = 1;  // keep the allocation from being elided
      std::free(p);
    }
  }
  state.SetLabel(device.is_cuda() ? "cudaMalloc+cudaFree" : "malloc+free");
}

// ---------------------------------------------------------------------------------------------
// GEMM

struct GemmShape {
  std::int64_t m, n, k;
  const char* what;
};

// Square problems and the products of the mlp_mnist network (784-512-512-10) at batch 128
// and 1024: forward (batch x out x in) is what dominates a training step.
const std::vector<GemmShape>& gemm_shapes(Device device) {
  static const std::vector<GemmShape> cpu = {{256, 256, 256, "square"},   {512, 512, 512, "square"},
                                             {1024, 1024, 1024, "square"}, {128, 512, 784, "mlp_fc1_b128"},
                                             {1024, 512, 784, "mlp_fc1_b1024"}, {1024, 512, 512, "mlp_fc2_b1024"},
                                             {1024, 10, 512, "mlp_fc3_b1024"}};
  static const std::vector<GemmShape> gpu = {{1024, 1024, 1024, "square"}, {4096, 4096, 4096, "square"},
                                             {8192, 8192, 8192, "square"}, {128, 512, 784, "mlp_fc1_b128"},
                                             {1024, 512, 784, "mlp_fc1_b1024"}, {1024, 512, 512, "mlp_fc2_b1024"},
                                             {1024, 10, 512, "mlp_fc3_b1024"}};
  return device.is_cuda() ? gpu : cpu;
}

void set_gemm_counters(benchmark::State& state, const GemmShape& s) {
  // A rate counter: Google Benchmark divides by the measured time, so this reads in GFLOP per second.
  state.counters["GFLOPs"] = benchmark::Counter(2e-9 * static_cast<double>(s.m * s.n * s.k) *
                                                    static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
}

// Random operands for one GEMM shape on `device`.
struct GemmOperands {
  Tensor a, b, c;
  GemmOperands(Device device, const GemmShape& s)
      : a(Tensor::empty({s.m, s.k}, DType::kF32, device)),
        b(Tensor::empty({s.k, s.n}, DType::kF32, device)),
        c(Tensor::empty({s.m, s.n}, DType::kF32, device)) {
    gpudl::Generator gen(1);
    gpudl::ops::uniform_(a, -1, 1, gen);
    gpudl::ops::uniform_(b, -1, 1, gen);
  }
};

// Our path: ops::matmul on tensors (contract checks, context lookup, dispatch).
void gemm_ours(benchmark::State& state, Device device, GemmShape s) {
  GemmOperands x(device, s);
  bench::time_iterations(state, device, [&] { gpudl::ops::matmul(x.c, x.a, x.b); });
  set_gemm_counters(state, s);
  state.SetLabel(std::string(s.what) + " gpudl " + device.str());
}

// The baseline: the BLAS library called directly on the same buffers.
void gemm_direct(benchmark::State& state, Device device, GemmShape s) {
  GemmOperands x(device, s);
  const float alpha = 1.0f, beta = 0.0f;
  const int m = static_cast<int>(s.m), n = static_cast<int>(s.n), k = static_cast<int>(s.k);
  float *a = x.a.data<float>(), *b = x.b.data<float>(), *c = x.c.data<float>();
  if (device.is_cuda()) {
#if GPUDL_WITH_CUDA
    cublasHandle_t handle = nullptr;
    cublasCreate(&handle);
    cublasSetStream(handle, static_cast<cudaStream_t>(Context::get(device).compute_stream().handle()));
    // Row-major C = A B is column-major C^T = B^T A^T.
    bench::time_iterations(state, device, [&] {
      cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, b, n, a, k, &beta, c, n);
    });
    cublasDestroy(handle);
#endif
  } else {
    bench::time_iterations(state, device, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, alpha, a, k, b, n, beta, c, n);
    });
  }
  set_gemm_counters(state, s);
  state.SetLabel(std::string(s.what) + (device.is_cuda() ? " cuBLAS direct" : " OpenBLAS direct"));
}

// ---------------------------------------------------------------------------------------------
// training steps

// One Adam step of the mlp_mnist network (784-512-512-10, ReLU, dropout 0.2, cross-entropy)
// on a fixed synthetic batch already on the device; the same network and protocol as
// bench/reference/mlp_mnist.py, so the two can be compared side by side. Steps run in blocks
// of kStepsPerBlock with one synchronisation at the end of each, like a training loop that
// reads its loss only now and then.
constexpr int kStepsPerBlock = 20;

void train_step(benchmark::State& state, Device device, Precision precision) {
  using namespace gpudl;
  const std::int64_t batch = state.range(0);
  manual_seed(1);
  Sequential net{Flatten(), Linear(784, 512), ReLU(), Dropout(0.2f), Linear(512, 512), ReLU(), Dropout(0.2f),
                 Linear(512, 10)};
  net.to(device);
  net.set_precision(precision);
  // As in a training loop (and PyTorch, whose input has no requires_grad): no dL/dx for the data.
  net.set_input_grad(false);
  Adam opt(net.parameters(), {.lr = 1e-3});
  CrossEntropyLoss loss;
  Generator gen(2);
  Tensor x = Tensor::empty({batch, 1, 28, 28}, DType::kF32, device);
  ops::uniform_(x, 0.0f, 1.0f, gen);
  std::vector<std::int64_t> labels(static_cast<std::size_t>(batch));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 10);
  const Tensor y = Tensor::from_vector(labels, {batch}, device);
  auto block = [&] {
    for (int i = 0; i < kStepsPerBlock; ++i) {
      opt.zero_grad();
      loss.forward(net.forward(x), y);
      net.backward(loss.backward());
      opt.step();
    }
  };
  bench::time_iterations(state, device, block);
  state.counters["samples_per_second"] = benchmark::Counter(
      static_cast<double>(batch * kStepsPerBlock) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string("mlp_mnist Adam step, ") + precision_name(precision) + ", " + device.str());
}

// ---------------------------------------------------------------------------------------------
// host <-> device copies

void copy_bandwidth(benchmark::State& state, bool to_device, bool pinned) {
  const std::int64_t n = state.range(0) / 4;
  const Device device = Device::cuda(0);
  Context& ctx = Context::get(device);
  Tensor host = pinned ? Tensor::empty_pinned({n}) : Tensor::empty({n});
  host.fill_(1.0);
  Tensor dev = Tensor::empty({n}, DType::kF32, device);
  gpudl::Event start(device, true), stop(device, true);
  for (auto _ : state) {
    start.record(ctx.copy_stream());
    if (to_device) {
      dev.copy_from_async(host, ctx.copy_stream());
    } else {
      host.copy_from_async(dev, ctx.copy_stream());
    }
    stop.record(ctx.copy_stream());
    stop.synchronize();
    state.SetIterationTime(stop.elapsed_ms(start) / 1e3);
  }
  state.counters["GB"] = benchmark::Counter(
      static_cast<double>(state.range(0)) * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(to_device ? "H2D " : "D2H ") + (pinned ? "pinned" : "pageable"));
}

// ---------------------------------------------------------------------------------------------
// dtype casts (the conversions of mixed precision)

void cast_bandwidth(benchmark::State& state, Device device, DType from, DType to) {
  const std::int64_t n = state.range(0);
  const Tensor x = bench::random_tensor({n}, device, 5).cast(from);
  Tensor y = Tensor::empty({n}, to, device);
  bench::time_iterations(state, device, [&] { gpudl::ops::cast(y, x); });
  const double bytes = static_cast<double>(n) * static_cast<double>(gpudl::dtype_size(from) + gpudl::dtype_size(to));
  state.counters["bytes_per_second"] =
      benchmark::Counter(bytes * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(gpudl::dtype_name(from)) + " -> " + gpudl::dtype_name(to));
}

}  // namespace

namespace {

void register_all() {
  const std::vector<Device> devices = bench::devices();
  for (Device d : devices) {
    const std::string dev = d.is_cuda() ? "cuda" : "cpu";
    benchmark::RegisterBenchmark(("pool_alloc_free/" + dev).c_str(), pool_alloc_free, d)
        ->RangeMultiplier(16)
        ->Range(256, 64 << 20);
    benchmark::RegisterBenchmark(("upstream_alloc_free/" + dev).c_str(), upstream_alloc_free, d)
        ->RangeMultiplier(16)
        ->Range(256, 64 << 20);
    for (const GemmShape& s : gemm_shapes(d)) {
      const std::string shape = std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
      auto* ours = benchmark::RegisterBenchmark(("gemm/" + dev + "/gpudl/" + shape).c_str(), gemm_ours, d, s);
      auto* direct = benchmark::RegisterBenchmark(("gemm/" + dev + "/direct/" + shape).c_str(), gemm_direct, d, s);
      for (auto* b : {ours, direct}) {
        if (d.is_cuda()) {
          b->UseManualTime();
        } else {
          b->UseRealTime();  // OpenBLAS runs on several threads
        }
        b->Unit(benchmark::kMicrosecond);
      }
    }
    for (const auto& [from, to] : {std::pair{DType::kF32, DType::kBF16}, std::pair{DType::kBF16, DType::kF32},
                                   std::pair{DType::kF32, DType::kF16}, std::pair{DType::kF16, DType::kF32}}) {
      const std::string name = "cast/" + dev + "/" + gpudl::dtype_name(from) + "_to_" + gpudl::dtype_name(to);
      auto* b = benchmark::RegisterBenchmark(name.c_str(), cast_bandwidth, d, from, to)
                    ->Arg(1 << 24)
                    ->Unit(benchmark::kMicrosecond);
      if (d.is_cuda()) {
        b->UseManualTime();
      } else {
        b->UseRealTime();
      }
    }
    // FP32 as "train_step/<dev>", the same step in bf16 as "train_step/<dev>/bf16".
    for (Precision p : {Precision::kF32, Precision::kBF16}) {
      const std::string suffix = p == Precision::kF32 ? "" : std::string("/") + precision_name(p);
      auto* step = benchmark::RegisterBenchmark(("train_step/" + dev + suffix).c_str(), train_step, d, p)
                       ->Arg(128)
                       ->Arg(1024)
                       ->Unit(benchmark::kMillisecond)
                       ->MinTime(1.0);
      if (d.is_cuda()) {
        step->UseManualTime();
      } else {
        step->UseRealTime();  // wall clock: OpenBLAS threads do part of the work
      }
    }
    if (d.is_cuda()) {
      for (bool to_device : {true, false}) {
        for (bool pinned : {true, false}) {
          const std::string name = std::string("copy/") + (to_device ? "h2d/" : "d2h/") + (pinned ? "pinned" : "pageable");
          benchmark::RegisterBenchmark(name.c_str(), copy_bandwidth, to_device, pinned)
              ->Arg(64 << 20)
              ->UseManualTime()
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  bench::register_cnn_benchmarks(bench::devices());
  bench::register_rnn_benchmarks(bench::devices());
  bench::register_op_benchmarks(bench::devices());
  bench::register_image_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
