// gpudl_bench's per-op cases: one forward and backward of every layer in the op table
// (tests/cases), on each device, with FLOP/s and bytes/s from the table's work estimate.
#include <memory>
#include <string>
#include <utility>

#include "bench_util.h"
#include "op_cases.h"

namespace bench {
namespace {

using gpudl::Device;
using gpudl::Tensor;

void op_fwd_bwd(benchmark::State& state, Device device, std::size_t index) {
  const gpudl::cases::OpCase& c = gpudl::cases::op_cases()[index];
  gpudl::manual_seed(1);
  const std::unique_ptr<gpudl::Module> m = c.bench_make();
  m->to(device);
  m->train();
  const Tensor x = gpudl::cases::make_input(c, c.bench_input, 2).to(device);
  const Tensor y0 = m->forward(x);
  const Tensor dy = random_tensor(y0.shape(), device, 3);
  m->backward(dy);
  time_iterations(state, device, [&] {
    m->forward(x);
    m->backward(dy);
  });
  const gpudl::cases::Work work = gpudl::cases::fwd_bwd_work(*m, c.bench_input, y0.shape());
  const auto iterations = static_cast<double>(state.iterations());
  state.counters["FLOP_per_second"] = benchmark::Counter(work.flops * iterations, benchmark::Counter::kIsRate);
  state.counters["bytes_per_second"] = benchmark::Counter(work.bytes * iterations, benchmark::Counter::kIsRate);
  state.SetLabel(m->describe() + " on " + c.bench_input.str() + ", forward + backward");
}

}  // namespace

void register_op_benchmarks(const std::vector<Device>& devices) {
  const auto& cases = gpudl::cases::op_cases();
  for (Device d : devices) {
    const std::string dev = d.is_cuda() ? "cuda" : "cpu";
    for (std::size_t i = 0; i < cases.size(); ++i) {
      if (cases[i].bench_input.ndim() == 0) continue;  // a variant checked, not timed
      auto* b = benchmark::RegisterBenchmark(("op/" + dev + "/" + gpudl::cases::sanitize(cases[i].name)).c_str(),
                                             op_fwd_bwd, d, i)
                    ->Unit(benchmark::kMicrosecond);
      if (d.is_cuda()) {
        b->UseManualTime();
      } else {
        b->UseRealTime();  // wall clock: the CPU kernels run on several threads
      }
    }
  }
}

}  // namespace bench
