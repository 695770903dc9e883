// Module: the interface every layer implements (explicit forward and backward, parameters
// with gradients, buffers, train/eval, devices), and Parameter.
#pragma once

#include <cstdint>
#include <memory>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "gpudl/core/runtime/device.h"
#include "gpudl/core/runtime/precision.h"
#include "gpudl/core/runtime/rng.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl {

class OnnxGraph;
struct OnnxValue;
namespace json {
class Value;
}

// A trainable tensor and the gradient that backward accumulates into it.
struct Parameter {
  // Its name in the outermost container that holds it ("1.weight_hh_l0"; "weight_hh_l0" for
  // a layer on its own): containers prefix it when they adopt a module, so that the names an
  // optimizer keys its state by are unique across the model.
  std::string name;
  Tensor value;
  Tensor grad;  // same shape, dtype and device as value
  // The name its own layer gave it ("weight_hh_l0"), which no container changes; "" means
  // `name` (a Parameter made by hand). Module::named_parameters() builds on it.
  std::string own_name = {};
};

// A named tensor for checkpoints: parameters, buffers (running statistics) and the like.
using NamedTensor = std::pair<std::string, Tensor>;

// The region of the input that one output position sees, along one spatial axis, by the
// standard recurrence: through a layer with kernel extent k, stride s and padding p,
// size += (k - 1) jump, start += ((k - 1) / 2 - p) jump, jump *= s. Input pixels have
// size 1, jump 1, and the first one is centred at 0.5.
struct ReceptiveField {
  double size = 1.0;
  double jump = 1.0;
  double start = 0.5;
  // Applies one layer with the given window to this field.
  void apply(std::int64_t kernel_extent, std::int64_t stride, std::int64_t padding) {
    size += static_cast<double>(kernel_extent - 1) * jump;
    start += (static_cast<double>(kernel_extent - 1) / 2.0 - static_cast<double>(padding)) * jump;
    jump *= static_cast<double>(stride);
  }
};

// The finite-value check, off by default (it reads every module's output back, a device sync
// each): when on, Sequential::forward throws NonFiniteError naming the first module whose
// output holds NaN or Inf, and the Trainer adds the step. GPUDL_CHECK_FINITE=1 turns it on
// at start-up.
void set_check_finite(bool on);
bool check_finite();

// As in the course material: forward maps x to y and keeps what backward needs; backward
// maps dL/dy to dL/dx and *accumulates* dL/dparameter into each Parameter::grad. A module
// supports one backward per forward. Not thread-safe.
class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(Module&&) = default;
  Module& operator=(Module&&) = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Throws ShapeError naming the layer and the shapes when x does not fit.
  virtual Tensor forward(const Tensor& x) = 0;
  // Throws Error when called without a preceding forward in train mode.
  virtual Tensor backward(const Tensor& grad_output) = 0;

  // "Linear(784, 512)": what the layer is, for summaries and messages.
  virtual std::string describe() const = 0;
  // Output shape for one sample of shape `input` (no batch axis); throws ShapeError.
  virtual Shape output_shape(const Shape& input) const { return input; }
  // Multiply-adds x2 for one sample of shape `input` (forward only).
  virtual std::int64_t flops(const Shape& input) const { (void)input; return 0; }
  // Moves `field` through this layer; layers that slide a window (convolution, pooling)
  // override it, the rest leave the field as it is.
  virtual void update_receptive_field(ReceptiveField& field) const { (void)field; }

  // Trainable parameters; Parameter::name is relative to the outermost container (containers
  // prefix their children's on adoption), Parameter::own_name to the layer itself.
  virtual std::vector<Parameter*> parameters() { return {}; }
  // The parameters by their dotted names relative to this module, as checkpoints store them:
  // an LSTM alone answers "weight_hh_l0", the same LSTM as child 1 of a Sequential answers
  // "weight_hh_l0" itself while the Sequential answers "1.weight_hh_l0". A layer's names are
  // its own; containers override this to prefix their children's on request.
  virtual std::vector<std::pair<std::string, Parameter*>> named_parameters();
  // The parameter of named_parameters() called `name`. Throws ValueError naming `name`, this
  // module and a few of the names it has when there is none.
  Parameter* parameter(const std::string& name);
  // Non-trainable state that belongs in a checkpoint, by pointer so it can be restored.
  virtual std::vector<std::pair<std::string, Tensor*>> buffers() { return {}; }
  // Random generators the module draws from (Dropout); saved in checkpoints, and held fixed
  // by the gradient checker.
  virtual std::vector<Generator*> generators() { return {}; }
  // Why a CUDA graph of this module's forward and backward would not replay correctly ("" when
  // it would): what the Trainer names when it runs eagerly instead. Modules that draw random
  // numbers are caught by generators() already; containers report their children's first.
  virtual std::string capture_blocker() const { return ""; }
  // Writes this module's eval-mode computation on `x` into `graph` (core/io/onnx.h) and returns
  // its output, for export_onnx. The default throws ValueError naming the module: a module has
  // an ONNX form only where it says so.
  virtual OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x);
  // This module's configuration, {"type": "Linear", ...}, from which build_module
  // (layers/architecture.h) builds an equal one (weights aside): what makes a saved model
  // loadable with no code. The default throws ValueError naming the module.
  virtual json::Value config() const;

  // Parameters (by named_parameters()) and buffers by name, for checkpoints. Throws ValueError
  // naming a name that repeats (a container that does not override named_parameters()).
  std::vector<NamedTensor> state();
  // Copies tensors into the parameters and buffers with the same names. Throws ValueError
  // naming a missing entry, ShapeError naming a mismatched one; every entry is checked before
  // any is copied, so after a throw the module is as it was.
  void load_state(const std::vector<NamedTensor>& state);

  // Moves parameters, gradients and buffers to `device`.
  virtual void to(Device device);
  Device device() const { return device_; }

  // Whether backward must return dL/dx; on by default. A training loop whose input is data,
  // not something being optimised, turns it off on its model (the Trainer does): Linear,
  // Conv2d and ConvTranspose2d then skip their input-gradient product and return an undefined
  // tensor, and a Sequential passes the flag to its leading modules up to the first one with
  // parameters (Flatten, Linear in an MLP), so the first layer's dX - a fifth of an MLP step's
  // arithmetic - is never computed. Other layers ignore the flag and still return dL/dx.
  virtual void set_input_grad(bool on) { input_grad_ = on; }
  bool input_grad() const { return input_grad_; }

  virtual void set_training(bool training) { training_ = training; }
  void train() { set_training(true); }
  void eval() { set_training(false); }
  bool is_training() const { return training_; }

  // Sets every parameter gradient to zero.
  void zero_grad();

  // What forward and backward compute in (fp32 by default). Containers pass it to their
  // children. Linear, Conv2d and ConvTranspose2d act on it: under bf16/fp16 they cast their
  // input and an FP32 master weight to that type and return their output in it; the layers
  // between them keep the type they are given (computing in FP32 inside), losses and recurrent
  // layers compute in FP32, and every backward returns its gradient in its input's type.
  // Parameters and their gradients stay FP32 throughout. Throws DeviceError where the module's device cannot run it.
  virtual void set_precision(Precision p);
  Precision precision() const { return precision_; }

  // Called with the module once its backward has finished, so its parameters' gradients are
  // final for the step: data parallelism starts their all-reduce then, while backward goes on
  // through the layers before. Containers call their children's hooks after each child's
  // backward and pass the hook on to them (an empty one removes it); the hook of the module
  // that backward was called on is its caller's business.
  using BackwardHook = std::function<void(Module&)>;
  virtual void set_backward_hook(BackwardHook hook) { backward_hook_ = std::move(hook); }
  // For containers: runs the hook, if any, after this module's backward.
  void backward_done() {
    if (backward_hook_) backward_hook_(*this);
  }

 protected:
  // Allocates value and a zeroed gradient of `shape` on this module's device.
  static Parameter make_parameter(std::string name, const Shape& shape, Device device);

  // The contract checks every backward makes. Forward keeps what backward needs only in train
  // mode; `kept` is whether it did. Throws Error naming the module when backward comes with no
  // train-mode forward before it (none at all, an eval-mode one, or the backward already done).
  void require_forward(bool kept) const;
  // Throws ShapeError naming the module and both shapes when grad_output is not shaped as the
  // forward output `expected` (`what`: "output", or "input" for shape-only layers).
  void require_grad_shape(const Tensor& grad_output, const Shape& expected, const char* what = "output") const;
  // Throws ValueError naming the module and the dtype unless `x` is f32, bf16 or f16.
  void require_float(const Tensor& x) const;

  Device device_;
  bool training_ = true;
  bool input_grad_ = true;
  Precision precision_ = Precision::kF32;
  BackwardHook backward_hook_;
};

}  // namespace gpudl
