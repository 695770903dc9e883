// gpudl_dist_bench: collectives and data-parallel training steps, run by every rank of a job
// (`mpirun -np N gpudl_dist_bench`; alone it is a job of one). All-reduce bandwidth is reported
// as nccl-tests defines it: algbw = bytes / time, busbw = algbw x 2(n - 1) / n. The training
// step is timed with its bucket all-reduces overlapped with backward, with them after backward,
// and without communication, and reports the share of the communication that the overlap hides.
// Iteration counts are fixed, since every rank must run the same collectives. Rank 0 reports.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <cstdio>
#include <string>
#include <vector>

#include "gpudl/gpudl.h"

namespace {

using gpudl::Device;
using gpudl::Tensor;
namespace dist = gpudl::dist;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Devices with a process group: the CPU (MPI) and, with a GPU, this rank's (NCCL).
std::vector<Device> devices() {
  std::vector<Device> out{Device::cpu()};
  if (Device::cuda_device_count() > 0 && dist::built_with_nccl()) out.push_back(Device::local());
  return out;
}

// Every rank starts each timed call together, so the time is the collective's, not a wait
// for a late peer.
void all_reduce_bandwidth(benchmark::State& state, Device device) {
  dist::ProcessGroup& g = dist::group(device);
  gpudl::Context& ctx = gpudl::Context::get(device);
  const std::int64_t bytes = state.range(0);
  Tensor t = Tensor::full({bytes / 4}, 1.0, gpudl::DType::kF32, device);
  g.all_reduce(t);
  ctx.synchronize();
  for (auto _ : state) {
    g.barrier();
    const double start = now();
    g.all_reduce(t);
    ctx.synchronize();
    state.SetIterationTime(now() - start);
  }
  const double n = g.size();
  state.counters["algbw_GBps"] =
      benchmark::Counter(static_cast<double>(bytes) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["busbw_GBps"] = benchmark::Counter(static_cast<double>(bytes) / 1e9 * 2.0 * (n - 1.0) / n,
                                                    benchmark::Counter::kIsIterationInvariantRate);
  state.counters["ranks"] = n;
  state.SetLabel(g.backend() + " " + device.str());
}

// The MLP of mlp_mnist (784-512-512-10), batch 128 per rank, Adam: its 670,000 parameters make
// 2.7 MB of gradients, in buckets of 1 MB so that several can start during backward.
struct Step {
  explicit Step(Device device, dist::DataParallelOptions options)
      : net{gpudl::Flatten(), gpudl::Linear(784, 512), gpudl::ReLU(), gpudl::Linear(512, 512), gpudl::ReLU(),
            gpudl::Linear(512, 10)} {
    gpudl::manual_seed(1);
    net.to(device);
    opt = std::make_unique<gpudl::Adam>(net.parameters(), gpudl::AdamOptions{.lr = 1e-3});
    dp = std::make_unique<dist::DataParallel>(net, dist::group(device), options);
    x = Tensor::full({128, 1, 28, 28}, 0.1, gpudl::DType::kF32, device);
    y = Tensor::zeros({128}, gpudl::DType::kI64, device);
  }
  void run(bool communicate) {
    opt->zero_grad();
    loss.forward(net.forward(x), y);
    if (communicate) dp->prepare(1.0 / dp->group().size());
    net.backward(loss.backward());
    if (communicate) dp->synchronize();
    opt->step();
  }
  gpudl::Sequential net;
  gpudl::CrossEntropyLoss loss;
  std::unique_ptr<gpudl::Adam> opt;
  std::unique_ptr<dist::DataParallel> dp;
  Tensor x, y;
};

double seconds_per_step(Step& step, bool communicate, int steps) {
  gpudl::Context& ctx = gpudl::Context::get(step.x.device());
  step.run(communicate);
  ctx.synchronize();
  dist::group(step.x.device()).barrier();
  const double start = now();
  for (int i = 0; i < steps; ++i) step.run(communicate);
  ctx.synchronize();
  return (now() - start) / steps;
}

void data_parallel_step(benchmark::State& state, Device device) {
  const std::size_t bucket = std::size_t{1} << 20;
  Step overlapped(device, {.bucket_bytes = bucket, .overlap = true});
  Step sequential(device, {.bucket_bytes = bucket, .overlap = false});
  const int steps = device.is_cuda() ? 50 : 10;
  double t_overlap = 0, t_sequential = 0, t_alone = 0;
  for (auto _ : state) {
    t_overlap = seconds_per_step(overlapped, true, steps);
    t_sequential = seconds_per_step(sequential, true, steps);
    t_alone = seconds_per_step(overlapped, false, steps);
    state.SetIterationTime(t_overlap);
  }
  state.counters["ranks"] = dist::group(device).size();
  state.counters["buckets"] = static_cast<double>(overlapped.dp->bucket_count());
  state.counters["step_ms_overlapped"] = t_overlap * 1e3;
  state.counters["step_ms_after_backward"] = t_sequential * 1e3;
  state.counters["step_ms_no_communication"] = t_alone * 1e3;
  // What the overlap saves of the communication's cost, as a share of that cost (0 when the
  // communication costs nothing measurable, as with one rank).
  const double cost = t_sequential - t_alone;
  state.counters["hidden_share"] = cost > 1e-6 ? std::clamp((t_sequential - t_overlap) / cost, 0.0, 1.0) : 0.0;
  state.SetLabel(dist::group(device).backend() + " " + device.str() + ", batch 128 per rank");
}

// Reports nothing: the other ranks run the same benchmarks for their collectives' sake.
class Silent final : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  for (Device device : devices()) {
    const std::string dev = device.is_cpu() ? "cpu" : "cuda";
    auto* b = benchmark::RegisterBenchmark(("all_reduce/" + dev).c_str(), all_reduce_bandwidth, device);
    // 4 KiB to 64 MiB on a GPU; 16 MiB on the CPU, where a large all-reduce takes long.
    b->RangeMultiplier(4)->Range(4 << 10, device.is_cuda() ? 64 << 20 : 16 << 20);
    b->Iterations(device.is_cuda() ? 50 : 10)->UseManualTime()->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("dp_step/" + dev + "/mlp").c_str(), data_parallel_step, device)
        ->Iterations(1)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  // A file reporter without --benchmark_out is an error to Google Benchmark: give one only then.
  bool file_output = false;
  for (int i = 1; i < argc; ++i) file_output = file_output || std::string(argv[i]).rfind("--benchmark_out=", 0) == 0;
  benchmark::Initialize(&argc, argv);
  if (dist::rank() == 0) {
    std::fprintf(stderr, "gpudl_dist_bench: %d rank(s)\n", dist::world_size());
    benchmark::RunSpecifiedBenchmarks();
  } else {
    Silent display, file;
    benchmark::RunSpecifiedBenchmarks(&display, file_output ? &file : nullptr);
  }
  benchmark::Shutdown();
  return 0;
}
