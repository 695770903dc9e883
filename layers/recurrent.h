// Recurrent layers: Elman RNN (tanh or ReLU), LSTM and GRU, stacked and optionally
// bidirectional, with carried state for truncated backpropagation through time; Embedding.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/nn/dnn_rnn.h"
#include "gpudl/core/runtime/module.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/dropout.h"

namespace gpudl {

enum class RecurrentMode : std::uint8_t { kRnnTanh, kRnnRelu, kLstm, kGru };

// What runs a stack on a CUDA device. kAuto: cuDNN's RNN API up to kCudnnAutoMaxHidden units
// wherever it computes what the fused cells do (not with dropout between layers in training,
// whose masks cuDNN would draw its own way, nor in deterministic mode), the fused cells elsewhere. kFused: always the fused cells (one
// GEMM and one cell kernel per step). kCudnn: cuDNN or a ValueError saying why not. The CPU
// always runs the fused cells.
enum class RecurrentBackend : std::uint8_t { kAuto, kFused, kCudnn };
// On the H200 (docs/performance.md) PyTorch's cuDNN LSTM ran 1.85x the fused cells' speed at 256
// units and 1.12x at 2 x 512, but 0.85x at 1024, where one GEMM per step fills the GPU: kAuto
// stops taking cuDNN above this size until our own cuDNN path has been timed.
inline constexpr std::int64_t kCudnnAutoMaxHidden = 512;

struct RecurrentOptions {
  std::int64_t num_layers = 1;
  bool bidirectional = false;
  float dropout = 0.0f;          // on the outputs of every layer but the last, in train mode
  std::uint64_t seed = 0;        // the dropout stream; 0 draws it from default_generator()
  Generator* generator = nullptr;  // initialisation; nullptr: default_generator()
  RecurrentBackend backend = RecurrentBackend::kAuto;
};

// A stack of recurrent layers over time-major sequences: x (T, B, input) → y (T, B, D·hidden),
// D = 2 when bidirectional (forward and backward outputs side by side, as PyTorch lays them).
// Parameters are PyTorch's, by the same names and layouts (weight_ih_l0 (G·hidden, input),
// weight_hh_l0 (G·hidden, hidden), bias_ih_l0, bias_hh_l0, "_reverse" for the backward
// direction; G = 1, 4, 3 for RNN, LSTM, GRU), initialised U(-1/√hidden, 1/√hidden).
//
// State: h (and c for the LSTM) of shape (layers·D, B, hidden). The initial state is zero
// unless set_state() gave one; after forward, final_h()/final_c() hold the last one; after
// backward, grad_h0()/grad_c0() hold dL/d(initial state). carry_state() makes the final state
// the next forward's initial state, cut from the graph: truncated BPTT over a long stream.
class Recurrent : public Module {
 public:
  // Throws ValueError for sizes < 1, layers < 1 or dropout outside [0, 1).
  Recurrent(RecurrentMode mode, std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options = {});

  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  std::int64_t flops(const Shape& input) const override;
  std::vector<Parameter*> parameters() override;
  std::vector<Generator*> generators() override;
  void to(Device device) override;

  // Initial state for the following forwards (until reset_state() or carry_state()). c0 is
  // for the LSTM only. Shapes are checked against the input at forward.
  void set_state(const Tensor& h0, const Tensor& c0 = Tensor());
  // The last forward's final state becomes the initial state; throws Error before any forward.
  void carry_state();
  // Back to zero initial state.
  void reset_state();

  const Tensor& final_h() const { return final_h_; }
  const Tensor& final_c() const { return final_c_; }
  const Tensor& grad_h0() const { return grad_h0_; }
  const Tensor& grad_c0() const { return grad_c0_; }

  RecurrentMode mode() const { return mode_; }
  RecurrentBackend backend() const { return backend_; }
  void set_backend(RecurrentBackend backend) { backend_ = backend; }
  // Whether the last forward ran on cuDNN's RNN API (else on the fused cells).
  bool last_forward_cudnn() const { return dnn_forward_; }
  std::int64_t hidden_size() const { return hidden_; }
  std::int64_t num_layers() const { return layers_; }
  std::int64_t directions() const { return directions_; }
  // Parameter `name` ("weight_hh_l1_reverse"), its own name also inside a container; throws
  // ValueError for an unknown name.
  Parameter& parameter(const std::string& name);

 private:
  // What one layer and direction keeps from forward for backward, in processing order (time
  // reversed for the backward direction).
  struct Saved {
    Tensor input;   // (T·B, in)
    Tensor gates;   // (T, B, G·hidden): LSTM activated gates, RNN unused, GRU (T, B, 4 hidden) saves
    Tensor h;       // (T + 1, B, hidden), h[0] the initial state
    Tensor c;       // (T + 1, B, hidden), LSTM only
  };

  std::int64_t gate_count() const;
  // Runs one layer and direction over `input` (T, B, in) in time order; returns (T, B, hidden)
  // in time order and fills saved_.
  Tensor run_direction(std::int64_t layer, std::int64_t dir, const Tensor& input, std::int64_t steps,
                       std::int64_t batch);
  // Backward of one layer and direction from dy (T, B, hidden) in time order; returns dx
  // (T, B, in) in time order and sets that slot of grad_h0_/grad_c0_.
  Tensor backward_direction(std::int64_t layer, std::int64_t dir, const Tensor& dy, std::int64_t steps,
                            std::int64_t batch);
  Parameter* param(std::int64_t layer, std::int64_t dir, int which);  // 0 W_ih, 1 W_hh, 2 b_ih, 3 b_hh
  // Why this forward cannot run on cuDNN ("" when it can).
  std::string cudnn_obstacle() const;
  // The whole stack through cuDNN's RNN API.
  Tensor forward_cudnn(const Tensor& x, std::int64_t steps, std::int64_t batch);
  Tensor backward_cudnn(const Tensor& dy);

  RecurrentMode mode_;
  std::int64_t input_, hidden_, layers_, directions_;
  float dropout_p_;
  std::vector<Parameter> params_;  // per layer and direction: W_ih, W_hh, b_ih, b_hh
  std::vector<Dropout> dropouts_;  // after layers 0 .. layers - 2
  std::vector<Saved> saved_;       // per layer and direction
  Tensor h0_, c0_, final_h_, final_c_, grad_h0_, grad_c0_;
  std::int64_t steps_ = 0, batch_ = 0;
  bool have_forward_ = false;
  DType input_dtype_ = DType::kF32;  // the forward's input type, for the input gradient
  RecurrentBackend backend_ = RecurrentBackend::kAuto;
  nn::DnnRnnState dnn_;  // cuDNN's packed weights and buffers, reused from forward to forward
  // A cuDNN training forward's input, output and initial states, for its backward (the states
  // as they were then: carry_state() may replace h0_ and c0_ before backward runs).
  Tensor dnn_x_, dnn_y_, dnn_h0_, dnn_c0_;
  bool dnn_forward_ = false;
};

// Elman network: h_t = act(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh), tanh or ReLU.
class RNN : public Recurrent {
 public:
  RNN(std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options = {}, bool relu = false)
      : Recurrent(relu ? RecurrentMode::kRnnRelu : RecurrentMode::kRnnTanh, input_size, hidden_size, options) {}
};

class LSTM : public Recurrent {
 public:
  LSTM(std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options = {})
      : Recurrent(RecurrentMode::kLstm, input_size, hidden_size, options) {}
};

class GRU : public Recurrent {
 public:
  GRU(std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options = {})
      : Recurrent(RecurrentMode::kGru, input_size, hidden_size, options) {}
};

// Token ids (any shape, i32) → vectors (..., dim) from a (vocab, dim) table initialised
// N(0, 1) as PyTorch does. Backward scatter-adds into the table and returns no input gradient.
class Embedding : public Module {
 public:
  // Throws ValueError for sizes < 1.
  Embedding(std::int64_t vocab, std::int64_t dim, Generator* generator = nullptr);

  // Throws ValueError naming the first id outside [0, vocab) when the ids are on the CPU.
  Tensor forward(const Tensor& ids) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  std::vector<Parameter*> parameters() override { return {&weight_}; }

  Parameter& weight() { return weight_; }

 private:
  std::int64_t vocab_, dim_;
  Parameter weight_;
  Tensor ids_;
};

// Truncated backpropagation through time with the Trainer over data::StreamBatches: `layer`'s
// state is reset at every epoch start (and before an evaluation), carried from each step to the
// next, and saved in checkpoints as "carried_state.h" (and ".c" for an LSTM), so a run resumed in
// the middle of an epoch continues exactly. Chains onto hooks already set in `options`; `layer`
// must outlive the Trainer.
void use_truncated_bptt(TrainerOptions& options, Recurrent& layer);

}  // namespace gpudl
