// CPU-vs-CUDA equivalence of the recurrent cell, embedding and time-reversal kernels, of whole
// recurrent layers over a sequence batch, and of a training step of char_rnn's model.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "gpu/equivalence.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/kernels/rnn.h"

namespace gpudl::testing {
namespace {

// The cells are the same float expressions on both sides, but CUDA's expf/tanhf differ from
// glibc's by an ulp or two, and nvcc contracts products into FMAs.
constexpr double kCellTolerance = 1e-5;
// A layer is a chain of GEMMs (kGemmTolerance each) and cells over T steps.
constexpr double kLayerTolerance = 1e-4;

struct Size {
  std::int64_t batch, hidden;
  std::string name() const { return std::to_string(batch) + "x" + std::to_string(hidden); }
};

constexpr Size kSizes[] = {{32, 256}, {64, 512}, {3, 7}};

std::vector<KernelCase> rnn_cases() {
  std::vector<KernelCase> cases;
  for (const Size s : kSizes) {
    const std::int64_t b = s.batch, h = s.hidden;
    cases.push_back({"lstm_cell_" + s.name(), kCellTolerance, [b, h](Device d) {
                       Tensor gates = input({b, 4 * h}, d, 200, -2.0f, 2.0f);
                       const Tensor c_prev = input({b, h}, d, 201), bi = input({4 * h}, d, 202),
                                    bh = input({4 * h}, d, 203), dh = input({b, h}, d, 204),
                                    dc = input({b, h}, d, 205);
                       Guarded hh = guarded({b, h}, DType::kF32, d), cc = guarded({b, h}, DType::kF32, d);
                       Guarded dpre = guarded({b, 4 * h}, DType::kF32, d), dcp = guarded({b, h}, DType::kF32, d);
                       detail::twin<&kernels::cpu::lstm_cell_forward, &kernels::cuda::lstm_cell_forward>(
                           d, {}, gates.data<float>(), hh.view.data<float>(), cc.view.data<float>(),
                           c_prev.data<float>(), bi.data<float>(), bh.data<float>(), b, h);
                       detail::twin<&kernels::cpu::lstm_cell_backward, &kernels::cuda::lstm_cell_backward>(
                           d, {}, dpre.view.data<float>(), dcp.view.data<float>(), dh.data<float>(), dc.data<float>(),
                           gates.data<float>(), c_prev.data<float>(), cc.view.data<float>(), b, h);
                       return Outputs{gates.to(Device::cpu()).to_vector<float>(), collect(hh), collect(cc),
                                      collect(dpre), collect(dcp)};
                     }});
    cases.push_back({"gru_cell_" + s.name(), kCellTolerance, [b, h](Device d) {
                       const Tensor xg = input({b, 3 * h}, d, 210, -2.0f, 2.0f), hg = input({b, 3 * h}, d, 211),
                                    h_prev = input({b, h}, d, 212), bi = input({3 * h}, d, 213),
                                    bh = input({3 * h}, d, 214), dh = input({b, h}, d, 215);
                       Guarded save = guarded({b, 4 * h}, DType::kF32, d), hn = guarded({b, h}, DType::kF32, d);
                       Guarded dxg = guarded({b, 3 * h}, DType::kF32, d), dhg = guarded({b, 3 * h}, DType::kF32, d),
                               dhp = guarded({b, h}, DType::kF32, d);
                       detail::twin<&kernels::cpu::gru_cell_forward, &kernels::cuda::gru_cell_forward>(
                           d, {}, save.view.data<float>(), hn.view.data<float>(), xg.data<float>(), hg.data<float>(),
                           h_prev.data<float>(), bi.data<float>(), bh.data<float>(), b, h);
                       detail::twin<&kernels::cpu::gru_cell_backward, &kernels::cuda::gru_cell_backward>(
                           d, {}, dxg.view.data<float>(), dhg.view.data<float>(), dhp.view.data<float>(),
                           dh.data<float>(), save.view.data<float>(), h_prev.data<float>(), b, h);
                       return Outputs{collect(save), collect(hn), collect(dxg), collect(dhg), collect(dhp)};
                     }});
    for (bool relu : {false, true}) {
      cases.push_back({std::string(relu ? "rnn_relu_cell_" : "rnn_tanh_cell_") + s.name(), kCellTolerance,
                       [b, h, relu](Device d) {
                         const Tensor pre = input({b, h}, d, 220, -2.0f, 2.0f), bi = input({h}, d, 221),
                                      bh = input({h}, d, 222), dh = input({b, h}, d, 223);
                         Guarded hh = guarded({b, h}, DType::kF32, d), dpre = guarded({b, h}, DType::kF32, d);
                         detail::twin<&kernels::cpu::rnn_cell_forward, &kernels::cuda::rnn_cell_forward>(
                             d, {}, hh.view.data<float>(), pre.data<float>(), bi.data<float>(), bh.data<float>(), b, h,
                             relu);
                         detail::twin<&kernels::cpu::rnn_cell_backward, &kernels::cuda::rnn_cell_backward>(
                             d, {}, dpre.view.data<float>(), dh.data<float>(), hh.view.data<float>(), b, h, relu);
                         return Outputs{collect(hh), collect(dpre)};
                       }});
    }
  }
  // Embedding: ids with repeats (the scatter-add sums several rows into one), a char_rnn
  // shape and a small one. Sums of at most a few terms: within kSumTolerance of any order.
  for (const auto& [n, vocab, dim] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{4096, 65, 64}, {7, 3, 5}}) {
    cases.push_back({"embedding_" + std::to_string(n) + "x" + std::to_string(vocab) + "x" + std::to_string(dim),
                     kSumTolerance, [n, vocab, dim](Device d) {
                       std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
                       for (std::int64_t k = 0; k < n; ++k)
                         ids[static_cast<std::size_t>(k)] = static_cast<std::int32_t>((k * 7 + k / 3) % vocab);
                       const Tensor id = Tensor::from_vector(ids, {n}).to(d), table = input({vocab, dim}, d, 230),
                                    dy = input({n, dim}, d, 231);
                       Guarded y = guarded({n, dim}, DType::kF32, d);
                       Tensor dtable = Tensor::zeros({vocab, dim}, DType::kF32, d);
                       detail::twin<&kernels::cpu::embedding_forward, &kernels::cuda::embedding_forward>(
                           d, {}, y.view.data<float>(), id.data<std::int32_t>(), table.data<float>(), n, dim, vocab);
                       detail::twin<&kernels::cpu::embedding_backward, &kernels::cuda::embedding_backward>(
                           d, {}, dtable.data<float>(), id.data<std::int32_t>(), dy.data<float>(), n, dim, vocab);
                       return Outputs{collect(y), dtable.to(Device::cpu()).to_vector<float>()};
                     }});
  }
  cases.push_back({"reverse_steps_128x2048", kExact, [](Device d) {
                     const Tensor x = input({128, 2048}, d, 240);
                     Guarded y = guarded({128, 2048}, DType::kF32, d);
                     detail::twin<&kernels::cpu::reverse_steps, &kernels::cuda::reverse_steps>(
                         d, {}, y.view.data<float>(), x.data<float>(), 128, 2048);
                     return Outputs{collect(y)};
                   }});
  // Whole layers: forward and backward over a sequence batch, stacked and bidirectional, with
  // a carried initial state; outputs, input gradient, state gradients and every weight gradient.
  for (RecurrentMode mode : {RecurrentMode::kRnnTanh, RecurrentMode::kLstm, RecurrentMode::kGru}) {
    const std::string name = mode == RecurrentMode::kLstm ? "lstm" : mode == RecurrentMode::kGru ? "gru" : "rnn";
    cases.push_back({name + "_layer_2x_bidirectional_T16_B8", kLayerTolerance, [mode](Device d) {
                       const std::int64_t steps = 16, batch = 8, in = 12, hidden = 24;
                       Generator gen(17);
                       Recurrent m(mode, in, hidden, {.num_layers = 2, .bidirectional = true, .generator = &gen});
                       m.to(d);
                       const Tensor h0 = input({4, batch, hidden}, d, 250);
                       const Tensor c0 = mode == RecurrentMode::kLstm ? input({4, batch, hidden}, d, 251) : Tensor();
                       m.set_state(h0, c0);
                       const Tensor x = input({steps, batch, in}, d, 252);
                       const Tensor y = m.forward(x);
                       m.zero_grad();
                       const Tensor dx = m.backward(input(y.shape(), d, 253));
                       Outputs out{y.to(Device::cpu()).to_vector<float>(), dx.to(Device::cpu()).to_vector<float>(),
                                   m.final_h().to(Device::cpu()).to_vector<float>(),
                                   m.grad_h0().to(Device::cpu()).to_vector<float>()};
                       for (Parameter* p : m.parameters()) out.push_back(p->grad.to(Device::cpu()).to_vector<float>());
                       return out;
                     }});
  }
  // cuDNN's RNN API (RecurrentBackend::kCudnn; the CPU runs the fused cells): each cell over one
  // layer from a zero state, three stacked layers from a given state, and a bidirectional
  // stack in eval mode (cuDNN's inference mode, forward only).
  const RecurrentMode modes[] = {RecurrentMode::kRnnTanh, RecurrentMode::kRnnRelu, RecurrentMode::kLstm,
                                 RecurrentMode::kGru};
  const char* mode_names[] = {"tanh", "relu", "lstm", "gru"};
  for (int k = 0; k < 4; ++k) {
    const RecurrentMode mode = modes[k];
    const std::string name = std::string("cudnn_") + mode_names[k];
    cases.push_back({name + "_1x_T32_B16_zero_state", kLayerTolerance, [mode](Device d) {
                       Generator gen(19);
                       Recurrent m(mode, 20, 48, {.generator = &gen, .backend = RecurrentBackend::kCudnn});
                       m.to(d);
                       const Tensor y = m.forward(input({32, 16, 20}, d, 254));
                       EXPECT_EQ(m.last_forward_cudnn(), d.is_cuda());
                       m.zero_grad();
                       const Tensor dx = m.backward(input(y.shape(), d, 255));
                       Outputs out{y.to(Device::cpu()).to_vector<float>(), dx.to(Device::cpu()).to_vector<float>(),
                                   m.final_h().to(Device::cpu()).to_vector<float>(),
                                   m.grad_h0().to(Device::cpu()).to_vector<float>()};
                       if (m.final_c().defined()) out.push_back(m.final_c().to(Device::cpu()).to_vector<float>());
                       if (m.grad_c0().defined()) out.push_back(m.grad_c0().to(Device::cpu()).to_vector<float>());
                       for (Parameter* p : m.parameters()) out.push_back(p->grad.to(Device::cpu()).to_vector<float>());
                       return out;
                     }});
    cases.push_back({name + "_3x_T8_B5_given_state", kLayerTolerance, [mode](Device d) {
                       Generator gen(23);
                       Recurrent m(mode, 6, 10, {.num_layers = 3, .generator = &gen, .backend = RecurrentBackend::kCudnn});
                       m.to(d);
                       const bool lstm = mode == RecurrentMode::kLstm;
                       m.set_state(input({3, 5, 10}, d, 256), lstm ? input({3, 5, 10}, d, 257) : Tensor());
                       const Tensor y = m.forward(input({8, 5, 6}, d, 258));
                       m.zero_grad();
                       const Tensor dx = m.backward(input(y.shape(), d, 259));
                       Outputs out{y.to(Device::cpu()).to_vector<float>(), dx.to(Device::cpu()).to_vector<float>(),
                                   m.final_h().to(Device::cpu()).to_vector<float>(),
                                   m.grad_h0().to(Device::cpu()).to_vector<float>()};
                       if (lstm) {
                         out.push_back(m.final_c().to(Device::cpu()).to_vector<float>());
                         out.push_back(m.grad_c0().to(Device::cpu()).to_vector<float>());
                       }
                       for (Parameter* p : m.parameters()) out.push_back(p->grad.to(Device::cpu()).to_vector<float>());
                       return out;
                     }});
    cases.push_back({name + "_2x_bidirectional_eval", kLayerTolerance, [mode](Device d) {
                       Generator gen(29);
                       Recurrent m(mode, 9, 16,
                                   {.num_layers = 2, .bidirectional = true, .dropout = 0.5f, .generator = &gen,
                                    .backend = RecurrentBackend::kCudnn});
                       m.to(d);
                       m.eval();
                       const Tensor y = m.forward(input({12, 7, 9}, d, 260));
                       Outputs out{y.to(Device::cpu()).to_vector<float>(), m.final_h().to(Device::cpu()).to_vector<float>()};
                       if (m.final_c().defined()) out.push_back(m.final_c().to(Device::cpu()).to_vector<float>());
                       return out;
                     }});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Rnn, KernelEquivalence, ::testing::ValuesIn(rnn_cases()), case_name);

using GpuCudnnRnn = GpuTest;

// kAuto takes cuDNN on a GPU up to kCudnnAutoMaxHidden units unless dropout between layers
// trains or determinism is asked for;
// kCudnn refuses those with the reason; the CPU always runs the fused cells.
TEST_F(GpuCudnnRnn, AutoPicksCudnnWhereItComputesTheSameAndSaysWhyNot) {
  const Device gpu = Device::cuda(0);
  const Tensor x = input({5, 4, 8}, gpu, 261);
  LSTM plain(8, 16, {.num_layers = 2});
  plain.to(gpu);
  plain.forward(x);
  EXPECT_TRUE(plain.last_forward_cudnn());

  LSTM dropped(8, 16, {.num_layers = 2, .dropout = 0.25f});
  dropped.to(gpu);
  dropped.forward(x);
  EXPECT_FALSE(dropped.last_forward_cudnn());
  dropped.eval();  // no dropout in eval mode, so cuDNN serves
  dropped.forward(x);
  EXPECT_TRUE(dropped.last_forward_cudnn());

  GRU insisting(8, 16, {.num_layers = 2, .dropout = 0.25f, .backend = RecurrentBackend::kCudnn});
  insisting.to(gpu);
  try {
    insisting.forward(x);
    ADD_FAILURE() << "expected a ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("dropout between layers"), std::string::npos) << e.what();
  }

  set_deterministic(true);
  plain.forward(x);
  const bool under_determinism = plain.last_forward_cudnn();
  set_deterministic(false);
  EXPECT_FALSE(under_determinism);

  LSTM wide(8, kCudnnAutoMaxHidden + 1);  // above the size where cuDNN was seen to win
  wide.to(gpu);
  wide.forward(x);
  EXPECT_FALSE(wide.last_forward_cudnn());

  LSTM fused(8, 16, {.backend = RecurrentBackend::kFused});
  fused.to(gpu);
  fused.forward(x);
  EXPECT_FALSE(fused.last_forward_cudnn());
}

// The facade under the layer, nn::dnn_rnn_forward / nn::dnn_rnn_backward (cuDNN's RNN API and
// the packing copies of kernels/cuda/dnn_rnn.cu), against its CPU twin, the fused cells of a
// Recurrent on the CPU with the same weights: outputs, final states, input and state gradients,
// and weight gradients added onto gradients already there.
TEST_F(GpuCudnnRnn, DnnRnnFacadeMatchesTheCpuCells) {
  const Device gpu = Device::cuda(0);
  const std::int64_t steps = 9, batch = 4, in = 6, hidden = 11;
  Generator gen(37);
  GRU cpu(in, hidden, {.num_layers = 2, .bidirectional = true, .generator = &gen});
  const Tensor x = input({steps, batch, in}, Device::cpu(), 280);
  const Tensor dy = input({steps, batch, 2 * hidden}, Device::cpu(), 281);
  const Tensor h0 = input({4, batch, hidden}, Device::cpu(), 282);
  cpu.set_state(h0);
  for (Parameter* p : cpu.parameters()) ops::copy(p->grad, input(p->grad.shape(), Device::cpu(), 283));
  std::vector<Tensor> grads_gpu, weights_gpu;
  for (Parameter* p : cpu.parameters()) {
    weights_gpu.push_back(p->value.to(gpu));
    grads_gpu.push_back(p->grad.to(gpu));  // the same starting gradients: backward adds to them
  }
  const Tensor y_cpu = cpu.forward(x);
  const Tensor dx_cpu = cpu.backward(dy);

  const kernels::DnnRnnShape shape{kernels::DnnCell::kGru, in, hidden, 2, 2, steps, batch};
  std::vector<const Tensor*> weights, grads;
  for (std::size_t i = 0; i < weights_gpu.size(); ++i) {
    weights.push_back(&weights_gpu[i]);
    grads.push_back(&grads_gpu[i]);
  }
  nn::DnnRnnState state;
  const Tensor xg = x.to(gpu), h0g = h0.to(gpu);
  const Tensor y = Tensor::empty({steps, batch, 2 * hidden}, DType::kF32, gpu);
  const Tensor hy = Tensor::empty({4, batch, hidden}, DType::kF32, gpu);
  nn::dnn_rnn_forward(state, shape, true, weights, xg, y, h0g, hy, Tensor(), Tensor());
  const Tensor dx = Tensor::empty(xg.shape(), DType::kF32, gpu), dh0 = Tensor::empty(h0g.shape(), DType::kF32, gpu);
  nn::dnn_rnn_backward(state, grads, xg, y, dy.to(gpu), h0g, Tensor(), dx, dh0, Tensor());

  const auto host = [](const Tensor& t) { return t.to(Device::cpu()).to_vector<float>(); };
  EXPECT_LE(relative_error(host(y), y_cpu.to_vector<float>()), kLayerTolerance);
  EXPECT_LE(relative_error(host(hy), cpu.final_h().to_vector<float>()), kLayerTolerance);
  EXPECT_LE(relative_error(host(dx), dx_cpu.to_vector<float>()), kLayerTolerance);
  EXPECT_LE(relative_error(host(dh0), cpu.grad_h0().to_vector<float>()), kLayerTolerance);
  const std::vector<Parameter*> params = cpu.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_LE(relative_error(host(grads_gpu[i]), params[i]->grad.to_vector<float>()), kLayerTolerance)
        << params[i]->name;
  }
  // The facade refuses tensors off the GPU, naming itself.
  nn::DnnRnnState cpu_state;
  EXPECT_THROW(nn::dnn_rnn_forward(cpu_state, shape, true, weights, x, y_cpu, h0, hy, Tensor(), Tensor()), DeviceError);
}

// Three chunks of truncated BPTT with carried state and SGD steps between them (weights change,
// so the packed copy must follow): cuDNN and the fused cells on the same GPU agree.
TEST_F(GpuCudnnRnn, CarriedStateAndUpdatedWeightsMatchTheFusedCells) {
  const Device gpu = Device::cuda(0);
  std::vector<float> results[2];
  for (int k = 0; k < 2; ++k) {
    Generator gen(31);
    LSTM m(12, 32, {.num_layers = 2, .bidirectional = true, .generator = &gen,
                    .backend = k == 0 ? RecurrentBackend::kFused : RecurrentBackend::kCudnn});
    m.to(gpu);
    SGD opt(m.parameters(), {.lr = 0.1, .momentum = 0.9});
    for (std::uint64_t chunk = 0; chunk < 3; ++chunk) {
      m.zero_grad();
      const Tensor y = m.forward(input({10, 6, 12}, gpu, 262 + chunk));
      EXPECT_EQ(m.last_forward_cudnn(), k == 1);
      m.backward(input(y.shape(), gpu, 270 + chunk));
      opt.step();
      m.carry_state();
      for (float v : y.to(Device::cpu()).to_vector<float>()) results[k].push_back(v);
    }
    for (Parameter* p : m.parameters()) {
      for (float v : p->value.to(Device::cpu()).to_vector<float>()) results[k].push_back(v);
    }
  }
  EXPECT_LE(relative_error(results[1], results[0]), kLayerTolerance);
}

using GpuCharRnnTraining = GpuTest;

// Three steps of char_rnn's model (embedding 64, LSTM 256, vocabulary 65, chunks of 128 steps,
// batch 32) with truncated BPTT state carried between them, against the CPU. SGD rather than
// char_rnn's Adam: Adam's first steps move every weight by ±lr whatever its gradient's size,
// so a near-zero gradient that rounds to the other sign would dominate the comparison.
TEST_F(GpuCharRnnTraining, StepsMatchTheCpu) {
  const std::int64_t vocab = 65, steps = 128, batch = 32;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(4 * steps * batch));
  const auto r = random_vector(ids.size(), 260, 0.0f, static_cast<float>(vocab));
  for (std::size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<std::int32_t>(r[i]) % static_cast<std::int32_t>(vocab);
  const data::StreamBatches stream(ids, batch, steps);
  std::vector<float> losses[2], weights[2];
  for (int k = 0; k < 2; ++k) {
    const Device device = k == 0 ? Device::cpu() : Device::cuda(0);
    manual_seed(3);
    Sequential net{Embedding(vocab, 64), LSTM(64, 256), Linear(256, vocab)};
    auto& lstm = dynamic_cast<Recurrent&>(net[1]);
    net.to(device);
    SGD opt(net.parameters(), {.lr = 0.5, .momentum = 0.9});
    CrossEntropyLoss loss;
    Tensor inputs, targets;
    for (std::int64_t c = 0; c < 3; ++c) {
      stream.chunk(c, inputs, targets);
      net.zero_grad();
      losses[k].push_back(loss.forward(net.forward(inputs), targets.to(device)).to_vector<float>()[0]);
      net.backward(loss.backward());
      clip_grad_norm(net.parameters(), 5.0f);
      opt.step();
      lstm.carry_state();
    }
    for (Parameter* p : net.parameters()) {
      for (float v : p->value.to(Device::cpu()).to_vector<float>()) weights[k].push_back(v);
    }
  }
  EXPECT_LE(relative_error(losses[1], losses[0]), 1e-4);
  EXPECT_LE(relative_error(weights[1], weights[0]), 1e-4);
}

}  // namespace
}  // namespace gpudl::testing
