// Recurrent layers and Embedding on both backends.
//
// Two roads on a GPU. The fused cells and GEMMs are the same sequence of GEMMs and the same
// per-element cell math (kernels/rnn.h) on both backends, so the CPU and the GPU agree step by
// step and the gradient checks cover the GPU's structure; carried state, per-step dropout and
// bidirectional joins stay plain code. Their cost is a cell kernel and a recurrent GEMM launch per
// time step (the input projections and weight gradients are single large GEMMs). cuDNN's RNN API
// runs a whole stack in a few calls, for the price of one batched copy of the PyTorch-shaped
// weights into its packed space per forward and one of the gradients back out; it serves where
// it computes the same function (RecurrentBackend), and the GPU tests hold it to the CPU.
#include "gpudl/layers/recurrent.h"

#include <cmath>
#include <utility>

#include "gpudl/core/runtime/context.h"
#include "gpudl/core/runtime/format.h"
#include "gpudl/core/nn/elementwise.h"
#include "gpudl/core/nn/rnn.h"
#include "gpudl/core/runtime/ops.h"

namespace gpudl {
namespace {

const char* mode_name(RecurrentMode mode) {
  switch (mode) {
    case RecurrentMode::kRnnTanh:
    case RecurrentMode::kRnnRelu: return "RNN";
    case RecurrentMode::kLstm: return "LSTM";
    case RecurrentMode::kGru: return "GRU";
  }
  return "RNN";
}

// Time reversal of (T, B, n) into a new tensor.
Tensor reversed(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), DType::kF32, x.device());
  nn::reverse_first_axis(out, x);
  return out;
}

// Copies the (rows, width) matrix src into columns [offset, offset + width) of dst (rows, total).
void put_columns(const Tensor& dst, const Tensor& src, std::int64_t offset) {
  const std::int64_t width = src.dim(src.ndim() - 1);
  nn::copy_columns(dst, offset, src, 0, width, width == 0 ? 0 : src.numel() / width);
}

// Columns [offset, offset + width) of src (rows, total) as a new (…, width) tensor.
Tensor take_columns(const Tensor& src, std::int64_t offset, std::int64_t width) {
  std::vector<std::int64_t> dims = src.shape().dims();
  const std::int64_t total = dims.back(), rows = total == 0 ? 0 : src.numel() / total;
  dims.back() = width;
  Tensor out = Tensor::empty(Shape(dims), DType::kF32, src.device());
  nn::copy_columns(out, 0, src, offset, width, rows);
  return out;
}

}  // namespace

Recurrent::Recurrent(RecurrentMode mode, std::int64_t input_size, std::int64_t hidden_size, RecurrentOptions options)
    : mode_(mode),
      input_(input_size),
      hidden_(hidden_size),
      layers_(options.num_layers),
      directions_(options.bidirectional ? 2 : 1),
      dropout_p_(options.dropout),
      backend_(options.backend) {
  if (input_ < 1 || hidden_ < 1 || layers_ < 1) {
    throw ValueError(std::string(mode_name(mode)) + "(" + std::to_string(input_) + ", " + std::to_string(hidden_) +
                     ", layers=" + std::to_string(layers_) + "): sizes and layer count must be >= 1");
  }
  if (!(dropout_p_ >= 0.0f && dropout_p_ < 1.0f)) {
    throw ValueError(std::string(mode_name(mode)) + ": dropout must be in [0, 1), got " + format_number(dropout_p_));
  }
  Generator& gen = options.generator != nullptr ? *options.generator : default_generator();
  const float bound = 1.0f / std::sqrt(static_cast<float>(hidden_));
  const std::int64_t g = gate_count() * hidden_;
  for (std::int64_t l = 0; l < layers_; ++l) {
    const std::int64_t in = l == 0 ? input_ : hidden_ * directions_;
    for (std::int64_t d = 0; d < directions_; ++d) {
      const std::string suffix = "_l" + std::to_string(l) + (d == 1 ? "_reverse" : "");
      params_.push_back(make_parameter("weight_ih" + suffix, {g, in}, device_));
      params_.push_back(make_parameter("weight_hh" + suffix, {g, hidden_}, device_));
      params_.push_back(make_parameter("bias_ih" + suffix, {g}, device_));
      params_.push_back(make_parameter("bias_hh" + suffix, {g}, device_));
    }
  }
  for (Parameter& p : params_) ops::uniform_(p.value, -bound, bound, gen);
  for (std::int64_t l = 0; l + 1 < layers_; ++l) {
    dropouts_.emplace_back(dropout_p_, options.seed == 0 ? 0 : options.seed + static_cast<std::uint64_t>(l));
  }
  saved_.resize(static_cast<std::size_t>(layers_ * directions_));
}

std::int64_t Recurrent::gate_count() const {
  switch (mode_) {
    case RecurrentMode::kLstm: return 4;
    case RecurrentMode::kGru: return 3;
    case RecurrentMode::kRnnTanh:
    case RecurrentMode::kRnnRelu: return 1;
  }
  return 1;
}

std::string Recurrent::describe() const {
  std::string s = std::string(mode_name(mode_)) + "(" + std::to_string(input_) + ", " + std::to_string(hidden_);
  if (layers_ != 1) s += ", layers=" + std::to_string(layers_);
  if (directions_ == 2) s += ", bidirectional";
  if (mode_ == RecurrentMode::kRnnRelu) s += ", relu";
  if (dropout_p_ > 0.0f) s += ", dropout=" + format_number(dropout_p_);
  return s + ")";
}

Shape Recurrent::output_shape(const Shape& input) const {
  // One sample is a sequence (T, input).
  if (input.ndim() != 2 || input[1] != input_) {
    throw ShapeError(describe() + ": expected a sequence (T, " + std::to_string(input_) + ") per sample, got " +
                     input.str());
  }
  return Shape{input[0], hidden_ * directions_};
}

std::int64_t Recurrent::flops(const Shape& input) const {
  const std::int64_t steps = input.ndim() == 2 ? input[0] : 1;
  std::int64_t total = 0;
  const std::int64_t g = gate_count() * hidden_;
  for (std::int64_t l = 0; l < layers_; ++l) {
    const std::int64_t in = l == 0 ? input_ : hidden_ * directions_;
    total += directions_ * steps * 2 * g * (in + hidden_);
  }
  return total;
}

std::vector<Parameter*> Recurrent::parameters() {
  std::vector<Parameter*> out;
  for (Parameter& p : params_) out.push_back(&p);
  return out;
}

std::vector<Generator*> Recurrent::generators() {
  std::vector<Generator*> out;
  for (Dropout& d : dropouts_) {
    for (Generator* g : d.generators()) out.push_back(g);
  }
  return out;
}

void Recurrent::to(Device device) {
  Module::to(device);
  for (Dropout& d : dropouts_) d.to(device);
  auto move = [&](Tensor& t) {
    if (t.defined()) t = t.to(device);
  };
  move(h0_);
  move(c0_);
  final_h_ = final_c_ = grad_h0_ = grad_c0_ = Tensor();
  for (Saved& s : saved_) s = Saved{};
  dnn_ = nn::DnnRnnState{};
  dnn_x_ = dnn_y_ = dnn_h0_ = dnn_c0_ = Tensor();
  dnn_forward_ = false;
  have_forward_ = false;
}

Parameter& Recurrent::parameter(const std::string& name) {
  // By its own name, which a container's prefix does not change.
  return *Module::parameter(name);
}

Parameter* Recurrent::param(std::int64_t layer, std::int64_t dir, int which) {
  return &params_[static_cast<std::size_t>((layer * directions_ + dir) * 4 + which)];
}

void Recurrent::set_state(const Tensor& h0, const Tensor& c0) {
  if (!h0.defined()) throw ValueError(describe() + ": set_state needs h0");
  if (mode_ == RecurrentMode::kLstm && !c0.defined()) throw ValueError(describe() + ": set_state needs c0 for an LSTM");
  if (mode_ != RecurrentMode::kLstm && c0.defined()) throw ValueError(describe() + ": only an LSTM has a cell state c0");
  h0_ = h0;
  c0_ = c0;
}

void Recurrent::carry_state() {
  if (!final_h_.defined()) throw Error(describe() + ": carry_state called before any forward");
  h0_ = final_h_;
  c0_ = final_c_;
}

void Recurrent::reset_state() {
  h0_ = Tensor();
  c0_ = Tensor();
}

// Recurrent layers compute in FP32 under every precision (their cell state must, and the
// products inside the cell loop are per-step small GEMMs): a bf16/fp16 input is widened here
// and its gradient returned in its own type.
Tensor Recurrent::forward(const Tensor& x_in) {
  require_float(x_in);
  input_dtype_ = x_in.dtype();
  const Tensor x = x_in.as(DType::kF32);
  if (x.ndim() != 3 || x.dim(2) != input_) {
    throw ShapeError(describe() + ": expected input (T, B, " + std::to_string(input_) + "), got " + x.shape().str());
  }
  if (x.device() != device_) {
    throw DeviceError(describe() + ": input on " + x.device().str() + ", parameters on " + device_.str());
  }
  const std::int64_t steps = x.dim(0), batch = x.dim(1), slots = layers_ * directions_;
  const Shape state_shape{slots, batch, hidden_};
  auto check_state = [&](const Tensor& t, const char* what) {
    if (t.defined() && (t.shape() != state_shape || t.device() != device_)) {
      throw ShapeError(describe() + ": initial state " + what + " is " + t.shape().str() + " on " + t.device().str() +
                       ", expected " + state_shape.str() + " on " + device_.str());
    }
  };
  check_state(h0_, "h0");
  check_state(c0_, "c0");
  steps_ = steps;
  batch_ = batch;
  final_h_ = Tensor::empty(state_shape, DType::kF32, device_);
  final_c_ = mode_ == RecurrentMode::kLstm ? Tensor::empty(state_shape, DType::kF32, device_) : Tensor();
  const bool want_cudnn = backend_ == RecurrentBackend::kCudnn ||
                          (backend_ == RecurrentBackend::kAuto && hidden_ <= kCudnnAutoMaxHidden);
  if (want_cudnn && device_.is_cuda()) {
    const std::string obstacle = cudnn_obstacle();
    if (obstacle.empty()) return forward_cudnn(x, steps, batch);
    if (backend_ == RecurrentBackend::kCudnn) throw ValueError(describe() + ": cannot run on cuDNN: " + obstacle);
  }
  dnn_forward_ = false;
  dnn_x_ = dnn_y_ = dnn_h0_ = dnn_c0_ = Tensor();
  Tensor layer_input = x;
  for (std::int64_t l = 0; l < layers_; ++l) {
    Tensor out;
    if (directions_ == 1) {
      out = run_direction(l, 0, layer_input, steps, batch);
    } else {
      out = Tensor::empty({steps, batch, 2 * hidden_}, DType::kF32, device_);
      for (std::int64_t d = 0; d < 2; ++d) put_columns(out, run_direction(l, d, layer_input, steps, batch), d * hidden_);
    }
    if (l + 1 < layers_) {
      Dropout& drop = dropouts_[static_cast<std::size_t>(l)];
      drop.set_training(training_);
      out = drop.forward(out);
    }
    layer_input = out;
  }
  have_forward_ = training_;
  if (!training_) {
    for (Saved& saved : saved_) saved = Saved{};  // an eval-mode forward keeps nothing for backward
  }
  return layer_input;
}

std::string Recurrent::cudnn_obstacle() const {
  if (!nn::dnn_rnn_built()) return "this libgpudl was built without CUDA";
  if (training_ && dropout_p_ > 0.0f && layers_ > 1) {
    return "dropout between layers in training (cuDNN would draw other masks than the fused cells)";
  }
  if (deterministic()) return "deterministic mode is on, and cuDNN does not promise bit-identical repeats here";
  return "";
}

Tensor Recurrent::forward_cudnn(const Tensor& x, std::int64_t steps, std::int64_t batch) {
  const kernels::DnnCell cell = mode_ == RecurrentMode::kLstm      ? kernels::DnnCell::kLstm
                                : mode_ == RecurrentMode::kGru     ? kernels::DnnCell::kGru
                                : mode_ == RecurrentMode::kRnnRelu ? kernels::DnnCell::kRnnRelu
                                                                   : kernels::DnnCell::kRnnTanh;
  const kernels::DnnRnnShape shape{cell, input_, hidden_, layers_, directions_, steps, batch};
  Tensor y = Tensor::empty({steps, batch, directions_ * hidden_}, DType::kF32, device_);
  std::vector<const Tensor*> weights;
  for (const Parameter& p : params_) weights.push_back(&p.value);
  nn::dnn_rnn_forward(dnn_, shape, training_, weights, x, y, h0_, final_h_, c0_, final_c_);
  for (Saved& s : saved_) s = Saved{};
  dnn_x_ = training_ ? x : Tensor();
  dnn_y_ = training_ ? y : Tensor();
  dnn_h0_ = training_ ? h0_ : Tensor();
  dnn_c0_ = training_ ? c0_ : Tensor();
  dnn_forward_ = true;
  have_forward_ = training_;
  return y;
}

Tensor Recurrent::backward_cudnn(const Tensor& dy) {
  Tensor dx = Tensor::empty({steps_, batch_, input_}, DType::kF32, device_);
  std::vector<const Tensor*> grads;
  for (const Parameter& p : params_) grads.push_back(&p.grad);
  nn::dnn_rnn_backward(dnn_, grads, dnn_x_, dnn_y_, dy, dnn_h0_, dnn_c0_, dx, grad_h0_, grad_c0_);
  dnn_x_ = dnn_y_ = dnn_h0_ = dnn_c0_ = Tensor();
  have_forward_ = false;
  return dx.as(input_dtype_);
}

Tensor Recurrent::run_direction(std::int64_t layer, std::int64_t dir, const Tensor& input, std::int64_t steps,
                                std::int64_t batch) {
  const std::int64_t in = input.dim(2), slot = layer * directions_ + dir, g = gate_count() * hidden_;
  Saved& s = saved_[static_cast<std::size_t>(slot)];
  const Tensor& w_ih = param(layer, dir, 0)->value;
  const Tensor& w_hh = param(layer, dir, 1)->value;
  const Tensor& b_ih = param(layer, dir, 2)->value;
  const Tensor& b_hh = param(layer, dir, 3)->value;
  s.input = (dir == 0 ? input : reversed(input)).reshape({steps * batch, in});
  s.h = Tensor::empty({steps + 1, batch, hidden_}, DType::kF32, device_);
  if (h0_.defined()) {
    s.h[0].copy_from(h0_[slot]);
  } else {
    ops::fill(s.h[0], 0.0);
  }
  const bool lstm = mode_ == RecurrentMode::kLstm, gru = mode_ == RecurrentMode::kGru;
  if (lstm) {
    s.c = Tensor::empty({steps + 1, batch, hidden_}, DType::kF32, device_);
    if (c0_.defined()) {
      s.c[0].copy_from(c0_[slot]);
    } else {
      ops::fill(s.c[0], 0.0);
    }
  }
  // Input projections of every step in one GEMM: P (T·B, G·hidden) = X W_ihᵀ.
  Tensor proj = ops::matmul(s.input, w_ih, {.transpose_b = true}).reshape({steps, batch, g});
  Tensor hproj = gru ? Tensor::empty({batch, g}, DType::kF32, device_) : Tensor();
  if (gru) s.gates = Tensor::empty({steps, batch, 4 * hidden_}, DType::kF32, device_);
  for (std::int64_t t = 0; t < steps; ++t) {
    const Tensor pre = proj[t], h_prev = s.h[t], h_next = s.h[t + 1];
    if (gru) {
      ops::matmul(hproj, h_prev, w_hh, {.transpose_b = true});
      nn::gru_cell_forward(s.gates[t], h_next, pre, hproj, h_prev, b_ih, b_hh);
      continue;
    }
    ops::matmul(pre, h_prev, w_hh, {.transpose_b = true, .beta = 1.0f});
    if (lstm) {
      nn::lstm_cell_forward(pre, h_next, s.c[t + 1], s.c[t], b_ih, b_hh);
    } else {
      nn::rnn_cell_forward(h_next, pre, b_ih, b_hh, mode_ == RecurrentMode::kRnnRelu);
    }
  }
  if (lstm) s.gates = proj;  // now the activated gates
  final_h_[slot].copy_from(s.h[steps]);
  if (lstm) final_c_[slot].copy_from(s.c[steps]);
  const Tensor out = s.h.slice(1, steps + 1);
  return dir == 0 ? out : reversed(out);
}

Tensor Recurrent::backward(const Tensor& grad_output) {
  require_forward(have_forward_);
  require_grad_shape(grad_output, Shape{steps_, batch_, hidden_ * directions_});
  const Shape state_shape{layers_ * directions_, batch_, hidden_};
  grad_h0_ = Tensor::empty(state_shape, DType::kF32, device_);
  grad_c0_ = mode_ == RecurrentMode::kLstm ? Tensor::empty(state_shape, DType::kF32, device_) : Tensor();
  if (dnn_forward_) return backward_cudnn(grad_output.as(DType::kF32));
  Tensor dy = grad_output.as(DType::kF32);
  for (std::int64_t l = layers_ - 1; l >= 0; --l) {
    if (l + 1 < layers_) dy = dropouts_[static_cast<std::size_t>(l)].backward(dy);
    Tensor dx;
    if (directions_ == 1) {
      dx = backward_direction(l, 0, dy, steps_, batch_);
    } else {
      dx = backward_direction(l, 0, take_columns(dy, 0, hidden_), steps_, batch_);
      ops::axpy(dx, 1.0f, backward_direction(l, 1, take_columns(dy, hidden_, hidden_), steps_, batch_));
    }
    dy = dx;
  }
  have_forward_ = false;
  for (Saved& s : saved_) s = Saved{};
  return dy.as(input_dtype_);
}

Tensor Recurrent::backward_direction(std::int64_t layer, std::int64_t dir, const Tensor& dy_time, std::int64_t steps,
                                     std::int64_t batch) {
  const std::int64_t slot = layer * directions_ + dir, g = gate_count() * hidden_;
  Saved& s = saved_[static_cast<std::size_t>(slot)];
  const std::int64_t in = s.input.dim(1);
  Parameter& w_ih = *param(layer, dir, 0);
  Parameter& w_hh = *param(layer, dir, 1);
  Parameter& b_ih = *param(layer, dir, 2);
  Parameter& b_hh = *param(layer, dir, 3);
  const Tensor dy = dir == 0 ? dy_time : reversed(dy_time);
  const bool lstm = mode_ == RecurrentMode::kLstm, gru = mode_ == RecurrentMode::kGru;
  // dL/d(input projection) and, for the GRU, dL/d(hidden projection) at every step.
  Tensor dproj = Tensor::empty({steps, batch, g}, DType::kF32, device_);
  Tensor dhproj = gru ? Tensor::empty({steps, batch, g}, DType::kF32, device_) : dproj;
  Tensor dh = Tensor::zeros({batch, hidden_}, DType::kF32, device_);  // from step t + 1
  Tensor dh_total = Tensor::empty({batch, hidden_}, DType::kF32, device_);
  Tensor dc = lstm ? Tensor::zeros({batch, hidden_}, DType::kF32, device_) : Tensor();
  for (std::int64_t t = steps - 1; t >= 0; --t) {
    ops::add(dh_total, dh, dy[t]);
    const Tensor dpre = dproj[t];
    if (lstm) {
      nn::lstm_cell_backward(dpre, dc, dh_total, dc, s.gates[t], s.c[t], s.c[t + 1]);
      ops::matmul(dh, dpre, w_hh.value);
    } else if (gru) {
      const Tensor dhp = dhproj[t];
      nn::gru_cell_backward(dpre, dhp, dh, dh_total, s.gates[t], s.h[t]);
      ops::matmul(dh, dhp, w_hh.value, {.beta = 1.0f});
    } else {
      nn::rnn_cell_backward(dpre, dh_total, s.h[t + 1], mode_ == RecurrentMode::kRnnRelu);
      ops::matmul(dh, dpre, w_hh.value);
    }
  }
  grad_h0_[slot].copy_from(dh);
  if (lstm) grad_c0_[slot].copy_from(dc);
  // Weight gradients over all steps at once: dW_ih += dPᵀ X, dW_hh += dP_hᵀ H_{0..T-1}.
  const Tensor dp2 = dproj.reshape({steps * batch, g}), dhp2 = dhproj.reshape({steps * batch, g});
  ops::matmul(w_ih.grad, dp2, s.input, {.transpose_a = true, .beta = 1.0f});
  ops::matmul(w_hh.grad, dhp2, s.h.slice(0, steps).reshape({steps * batch, hidden_}),
              {.transpose_a = true, .beta = 1.0f});
  if (gru) {
    nn::accumulate_bias_grad(b_ih.grad, dp2);
    nn::accumulate_bias_grad(b_hh.grad, dhp2);
  } else {
    // Both biases enter the same pre-activation, so their gradients are the same sums: one
    // pass over (T·B, G·hidden) instead of two. 0 + s rounds to s, so each gradient gets what
    // its own column_sum_add would have added (up to the sign of a zero sum).
    Tensor db = Tensor::zeros({g}, DType::kF32, device_);
    nn::accumulate_bias_grad(db, dp2);
    ops::axpy(b_ih.grad, 1.0f, db);
    ops::axpy(b_hh.grad, 1.0f, db);
  }
  Tensor dx = ops::matmul(dp2, w_ih.value).reshape({steps, batch, in});
  return dir == 0 ? dx : reversed(dx);
}

// ---------------------------------------------------------------------------------------------
// Embedding

Embedding::Embedding(std::int64_t vocab, std::int64_t dim, Generator* generator) : vocab_(vocab), dim_(dim) {
  if (vocab_ < 1 || dim_ < 1) {
    throw ValueError("Embedding(" + std::to_string(vocab_) + ", " + std::to_string(dim_) + "): sizes must be >= 1");
  }
  weight_ = make_parameter("weight", {vocab_, dim_}, device_);
  ops::normal_(weight_.value, 0.0f, 1.0f, generator != nullptr ? *generator : default_generator());
}

std::string Embedding::describe() const {
  return "Embedding(" + std::to_string(vocab_) + ", " + std::to_string(dim_) + ")";
}

Shape Embedding::output_shape(const Shape& input) const {
  std::vector<std::int64_t> dims = input.dims();
  dims.push_back(dim_);
  return Shape(dims);
}

Tensor Embedding::forward(const Tensor& ids) {
  ids.check_dtype(DType::kI32, "Embedding ids");
  Tensor on_device = ids;
  if (ids.device() != device_) {
    if (!ids.device().is_cpu()) {
      throw DeviceError(describe() + ": ids on " + ids.device().str() + ", table on " + device_.str());
    }
    // Checked on the host, where it costs nothing, before they reach the device.
    const std::vector<std::int32_t> host = ids.to_vector<std::int32_t>();
    for (std::size_t k = 0; k < host.size(); ++k) {
      if (host[k] < 0 || host[k] >= vocab_) {
        throw ValueError(describe() + ": id " + std::to_string(host[k]) + " at position " + std::to_string(k) +
                         " is outside the vocabulary [0, " + std::to_string(vocab_) + ")");
      }
    }
    on_device = ids.to(device_);
  }
  std::vector<std::int64_t> dims = ids.shape().dims();
  dims.push_back(dim_);
  Tensor y = Tensor::empty(Shape(dims), DType::kF32, device_);
  nn::embedding_forward(y, on_device, weight_.value);
  ids_ = training_ ? on_device : Tensor();
  return y;
}

Tensor Embedding::backward(const Tensor& grad_output) {
  require_forward(ids_.defined());
  if (grad_output.numel() != ids_.numel() * dim_) {
    throw ShapeError(describe() + ": gradient " + grad_output.shape().str() + " does not match " +
                     std::to_string(ids_.numel()) + " ids of width " + std::to_string(dim_));
  }
  nn::embedding_backward(weight_.grad, ids_, grad_output.as(DType::kF32));
  ids_ = Tensor();
  return Tensor();  // ids have no gradient
}

// ---------------------------------------------------------------------------------------------
// Truncated BPTT through the Trainer

namespace {

// Rows of `w` (gates · hidden, cols) reordered from PyTorch's gate blocks to ONNX's: LSTM
// [i, f, g, o] -> [i, o, f, c], GRU [r, z, n] -> [z, r, h]; a plain RNN has one block.
std::vector<float> onnx_gate_order(const std::vector<float>& w, RecurrentMode mode, std::int64_t hidden,
                                   std::int64_t cols) {
  std::vector<std::int64_t> order{0};
  if (mode == RecurrentMode::kLstm) order = {0, 3, 1, 2};
  if (mode == RecurrentMode::kGru) order = {1, 0, 2};
  std::vector<float> out;
  out.reserve(w.size());
  const std::size_t block = static_cast<std::size_t>(hidden * cols);
  for (std::int64_t b : order) {
    const auto first = w.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(b) * block);
    out.insert(out.end(), first, first + static_cast<std::ptrdiff_t>(block));
  }
  return out;
}

}  // namespace

// One ONNX LSTM/GRU/RNN node per layer, both directions in it, from zero initial states. ONNX's
// output (T, directions, B, hidden) becomes this layer's (T, B, directions · hidden).
OnnxValue Recurrent::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  if (x.rank != 3) {
    throw ShapeError("export_onnx: " + describe() + " takes (T, B, features), got an input of " +
                     std::to_string(x.rank) + " axes");
  }
  const char* op = mode_ == RecurrentMode::kLstm ? "LSTM" : mode_ == RecurrentMode::kGru ? "GRU" : "RNN";
  const std::int64_t g = gate_count() * hidden_;
  const std::string prefix = onnx_name_prefix(params_.front());
  std::string y = x.name;
  for (std::int64_t l = 0; l < layers_; ++l) {
    const std::int64_t in = l == 0 ? input_ : hidden_ * directions_;
    std::vector<float> w, r, b;
    for (std::int64_t d = 0; d < directions_; ++d) {
      auto host = [&](int which) { return param(l, d, which)->value.to(Device::cpu()).to_vector<float>(); };
      const std::vector<float> wd = onnx_gate_order(host(0), mode_, hidden_, in);
      const std::vector<float> rd = onnx_gate_order(host(1), mode_, hidden_, hidden_);
      const std::vector<float> wb = onnx_gate_order(host(2), mode_, hidden_, 1);
      const std::vector<float> rb = onnx_gate_order(host(3), mode_, hidden_, 1);
      w.insert(w.end(), wd.begin(), wd.end());
      r.insert(r.end(), rd.begin(), rd.end());
      b.insert(b.end(), wb.begin(), wb.end());
      b.insert(b.end(), rb.begin(), rb.end());
    }
    const std::string layer = prefix + "l" + std::to_string(l) + "_";
    std::vector<OnnxAttribute> attributes{{"hidden_size", hidden_},
                                          {"direction", std::string(directions_ == 2 ? "bidirectional" : "forward")}};
    if (mode_ == RecurrentMode::kGru) attributes.push_back({"linear_before_reset", std::int64_t{1}});  // PyTorch's GRU
    if (mode_ == RecurrentMode::kRnnRelu) {
      attributes.push_back({"activations", std::vector<std::string>(static_cast<std::size_t>(directions_), "Relu")});
    }
    const std::string seq = graph.add(op,
                                      {y, graph.weight(layer + "W", {directions_, g, in}, std::move(w)),
                                       graph.weight(layer + "R", {directions_, g, hidden_}, std::move(r)),
                                       graph.weight(layer + "B", {directions_, 2 * g}, std::move(b))},
                                      std::move(attributes), 1)
                                .front();
    if (directions_ == 1) {
      y = graph.op("Squeeze", {seq, graph.ints("axes", {1})});
    } else {
      const std::string t = graph.op("Transpose", {seq}, {{"perm", std::vector<std::int64_t>{0, 2, 1, 3}}});
      y = graph.op("Reshape", {t, graph.ints("shape", {0, 0, -1})});
    }
  }
  return {y, 3};
}

// A Gather of the table's rows; ids of any integer type ONNX's Gather takes.
OnnxValue Embedding::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  return {graph.op("Gather", {graph.weight(weight_), x.name}, {{"axis", std::int64_t{0}}}), x.rank + 1};
}

void use_truncated_bptt(TrainerOptions& options, Recurrent& layer) {
  Recurrent* r = &layer;
  auto chain = [](std::function<void()> first, std::function<void()> then) {
    return [first = std::move(first), then = std::move(then)] {
      if (first) first();
      then();
    };
  };
  options.on_epoch_start = chain(std::move(options.on_epoch_start), [r] { r->reset_state(); });
  options.after_step = chain(std::move(options.after_step), [r] { r->carry_state(); });
  options.checkpoint_extra = [previous = std::move(options.checkpoint_extra), r] {
    std::vector<NamedTensor> extra = previous ? previous() : std::vector<NamedTensor>{};
    if (r->final_h().defined()) extra.emplace_back("carried_state.h", r->final_h());
    if (r->final_c().defined()) extra.emplace_back("carried_state.c", r->final_c());
    return extra;
  };
  options.restore_extra = [previous = std::move(options.restore_extra), r](const std::string& path,
                                                                          const std::vector<NamedTensor>& extra) {
    if (previous) previous(path, extra);
    const Tensor *h = nullptr, *c = nullptr;
    for (const auto& [name, t] : extra) {
      if (name == "carried_state.h") h = &t;
      if (name == "carried_state.c") c = &t;
    }
    r->reset_state();
    if (h != nullptr) r->set_state(h->to(r->device()), c != nullptr ? c->to(r->device()) : Tensor());
  };
}

}  // namespace gpudl
