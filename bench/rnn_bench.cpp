// gpudl_bench's recurrent cases: LSTM forward + backward throughput (tokens/s) at hidden 256,
// 512 and 1024 (sequence 128, batch 64), on a GPU also through cuDNN's RNN API and through the
// fused cells each on its own, and whole training steps of char_rnn's model.
#include <string>

#include "bench_util.h"
#include "gpudl/gpudl.h"

namespace bench {
namespace {

using gpudl::Device;

// Steps per timed block, one synchronisation per block: the protocol of bench/reference/char_rnn.py.
constexpr int kStepsPerBlock = 5;

void lstm_fwd_bwd(benchmark::State& state, Device device, gpudl::RecurrentBackend backend) {
  using namespace gpudl;
  const std::int64_t hidden = state.range(0), steps = 128, batch = 64;
  manual_seed(1);
  LSTM lstm(hidden, hidden, {.backend = backend});
  lstm.to(device);
  const Tensor x = random_tensor({steps, batch, hidden}, device, 3);
  const Tensor dy = random_tensor({steps, batch, hidden}, device, 4);
  time_iterations(state, device, [&] {
    for (int i = 0; i < kStepsPerBlock; ++i) {
      lstm.forward(x);
      lstm.backward(dy);
    }
  });
  state.counters["tokens_per_second"] = benchmark::Counter(
      static_cast<double>(steps * batch * kStepsPerBlock) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
  state.SetLabel("LSTM " + std::to_string(hidden) + " forward+backward, T 128, B 64, " + device.str() +
                 (lstm.last_forward_cudnn() ? ", cuDNN" : ", fused cells"));
}

// char_rnn's model: embedding 64, LSTM layers (arguments: streams, units, layers; the example's
// defaults are 32, 256, 1), vocabulary 65 (Tiny Shakespeare), chunks of 128 characters, Adam,
// gradient clipping at 5, carried state.
void char_rnn_step(benchmark::State& state, Device device) {
  using namespace gpudl;
  const std::int64_t vocab = 65, steps = 128, batch = state.range(0), hidden = state.range(1);
  manual_seed(1);
  Sequential net{Embedding(vocab, 64), LSTM(64, hidden, {.num_layers = state.range(2)}), Linear(hidden, vocab)};
  auto& lstm = dynamic_cast<Recurrent&>(net[1]);
  net.to(device);
  Adam opt(net.parameters(), {.lr = 2e-3});
  CrossEntropyLoss loss;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(steps * batch));
  std::vector<std::int64_t> next(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<std::int32_t>((i * 31 + i / 7) % vocab);
    next[i] = static_cast<std::int64_t>((i * 17 + 3) % vocab);
  }
  const Tensor x = Tensor::from_vector(ids, {steps, batch}, device);
  const Tensor y = Tensor::from_vector(next, {steps, batch}, device);
  time_iterations(state, device, [&] {
    for (int i = 0; i < kStepsPerBlock; ++i) {
      opt.zero_grad();
      loss.forward(net.forward(x), y);
      net.backward(loss.backward());
      clip_grad_norm(net.parameters(), 5.0f);
      opt.step();
      lstm.carry_state();
    }
  });
  state.counters["tokens_per_second"] = benchmark::Counter(
      static_cast<double>(steps * batch * kStepsPerBlock) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
  state.SetLabel("char_rnn training step, LSTM " + std::to_string(state.range(2)) + "x" + std::to_string(hidden) +
                 ", " + device.str());
}

}  // namespace

void register_rnn_benchmarks(const std::vector<Device>& devices) {
  for (Device d : devices) {
    const std::string dev = d.is_cuda() ? "cuda" : "cpu";
    auto* b = benchmark::RegisterBenchmark(("lstm/" + dev + "/fwd_bwd").c_str(), lstm_fwd_bwd, d,
                                           gpudl::RecurrentBackend::kAuto)
                  ->Arg(256)
                  ->Unit(benchmark::kMillisecond);
    b->Arg(512)->Arg(1024);
    if (d.is_cuda()) {
      // Each road on its own, beside the default's choice (cuDNN up to kCudnnAutoMaxHidden units).
      for (const auto& [name, backend] : {std::pair{"fused", gpudl::RecurrentBackend::kFused},
                                          std::pair{"cudnn", gpudl::RecurrentBackend::kCudnn}}) {
        benchmark::RegisterBenchmark(("lstm/cuda/" + std::string(name) + "/fwd_bwd").c_str(), lstm_fwd_bwd, d, backend)
            ->Arg(256)
            ->Arg(512)
            ->Arg(1024)
            ->Unit(benchmark::kMillisecond)
            ->UseManualTime();
      }
    }
    auto* s = benchmark::RegisterBenchmark(("char_rnn_step/" + dev).c_str(), char_rnn_step, d)
                  ->Args({32, 256, 1})
                  ->Unit(benchmark::kMillisecond);
    if (d.is_cuda()) s->Args({64, 512, 2});
    for (auto* r : {b, s}) {
      if (d.is_cuda()) {
        r->UseManualTime();
      } else {
        r->UseRealTime();
      }
    }
  }
}

}  // namespace bench
