// Shared by gpudl_bench's source files: the devices to run on and the timing loop.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <vector>

#include "gpudl/gpudl.h"

namespace bench {

// The CPU, plus CUDA:0 when a GPU is usable (saying once why not otherwise).
inline std::vector<gpudl::Device> devices() {
  std::vector<gpudl::Device> out{gpudl::Device::cpu()};
  if (gpudl::Device::cuda_device_count() > 0) {
    out.push_back(gpudl::Device::cuda(0));
  } else {
    static bool said = false;
    if (!said) {
      std::fprintf(stderr, "gpudl_bench: no GPU (%s); CPU benchmarks only\n",
                   gpudl::Device::cuda_unavailable_reason().c_str());
      said = true;
    }
  }
  return out;
}

// Times `run` once per iteration: with CUDA events on the compute stream (manual time) on a
// GPU, by the wall clock on the CPU. One warm-up call first. Reports the device pool's peak
// bytes in use over the timed calls as the counter peak_pool_bytes: what the work holds at its
// fullest (a training step's parameters, optimizer state, activations and workspace), the
// figure mixed precision is meant to lower.
template <class Fn>
void time_iterations(benchmark::State& state, gpudl::Device device, Fn run) {
  gpudl::Context& ctx = gpudl::Context::get(device);
  run();
  ctx.synchronize();
  ctx.memory_pool().reset_peak_stats();
  if (device.is_cuda()) {
    gpudl::Event start(device, true), stop(device, true);
    for (auto _ : state) {
      start.record(ctx.compute_stream());
      run();
      stop.record(ctx.compute_stream());
      stop.synchronize();
      state.SetIterationTime(stop.elapsed_ms(start) / 1e3);
    }
  } else {
    for (auto _ : state) {
      run();
      benchmark::ClobberMemory();
    }
  }
  state.counters["peak_pool_bytes"] = static_cast<double>(ctx.memory_pool().stats().peak_in_use_bytes);
}

// Uniform [-1, 1) values of `shape` on `device` from Philox stream `seed`.
inline gpudl::Tensor random_tensor(const gpudl::Shape& shape, gpudl::Device device, std::uint64_t seed) {
  gpudl::Tensor t = gpudl::Tensor::empty(shape, gpudl::DType::kF32, device);
  gpudl::Generator gen(seed);
  gpudl::ops::uniform_(t, -1.0f, 1.0f, gen);
  return t;
}

// Registers the convolution, pooling, batch-norm and CNN training-step cases (cnn_bench.cpp).
void register_cnn_benchmarks(const std::vector<gpudl::Device>& devices);
// Registers the LSTM throughput and char_rnn training-step cases (rnn_bench.cpp).
void register_rnn_benchmarks(const std::vector<gpudl::Device>& devices);
// Registers one forward-and-backward case per entry of the op table (op_bench.cpp).
void register_op_benchmarks(const std::vector<gpudl::Device>& devices);
// Registers PNG/JPEG decoding and the image-folder loader, on the CPU only (image_bench.cpp).
void register_image_benchmarks();

}  // namespace bench
