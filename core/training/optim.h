// Optimizers (SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW), global gradient-norm clipping, and
// make_optimizer for choosing one by name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gpudl/core/runtime/module.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl {

// Updates a fixed list of parameters from their gradients. The update rules are PyTorch's
// (torch.optim), so hyperparameters carry over. Each step never waits for the device.
//
// Multi-tensor updates: at the first step, when every parameter is f32 on one GPU (or on the
// CPU after set_multi_tensor(true)) with memory of its own, the optimizer moves the
// parameters, their gradients and its state into flat buffers (one each) and points every
// Parameter's value and grad at its slice, so a step is one fused kernel launch over all of
// them instead of one per tensor (the update rules are element-wise, so the results are the
// same bit for bit). Code that replaces a Parameter's
// tensors (Module::to, a moved parameter) is noticed at the next step, which builds the store
// again; where the conditions do not hold (parameters on several devices, tied weights, ZeRO-1
// shares) each tensor gets its own launch. set_multi_tensor(false) keeps them apart.
// Per-parameter state buffers are allocated on the parameter's device at the first step (as
// zeros) and follow the parameter if it later moves to another device. The Parameter objects
// must outlive the optimizer. Not thread-safe.
class Optimizer {
 public:
  // Throws ValueError when `params` is empty, holds a null pointer, or a parameter's value or
  // gradient is undefined.
  explicit Optimizer(std::vector<Parameter*> params);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter; steps() grows by one. Every parameter is checked before any
  // is changed: throws ValueError for a non-f32 or undefined value or gradient, ShapeError when
  // a gradient's shape differs from its parameter's, DeviceError when they live on different
  // devices.
  virtual void step() = 0;
  // Sets every gradient to zero.
  void zero_grad();

  double lr() const;
  // For schedules: takes effect at the next step. Throws ValueError unless lr is finite and >= 0.
  void set_lr(double lr);
  // Completed steps (restored by load_state).
  std::int64_t steps() const;
  // For a loop that replays a captured step() (CudaGraph), which the host does not run again:
  // sets the count steps() reports. Throws ValueError for a negative count.
  void set_steps(std::int64_t steps);

  // "sgd", "adagrad", "rmsprop", "adadelta", "adam" or "adamw".
  virtual std::string kind() const = 0;
  // The current learning rate and the other options by name ("lr", "momentum", ...); flags as 0 or 1.
  virtual std::vector<std::pair<std::string, double>> hyperparameters() const = 0;

  // The state to checkpoint: each parameter's buffers named "<parameter name>.<buffer>" (for
  // example "0.weight.exp_avg"; zeros before the first step) and the step count as a 1-element
  // i64 tensor named "step". Buffers are returned by reference: clone them to keep a snapshot.
  // Throws ValueError when two parameters share a name.
  virtual std::vector<NamedTensor> state() const;
  // Restores what state() returned (entries it does not know are ignored), casting to f32 and
  // copying to each parameter's device. Checks everything before changing anything: throws
  // ValueError naming a missing entry (or for a negative step count, or two parameters with
  // one name), ShapeError naming an entry whose shape differs from its parameter's.
  virtual void load_state(const std::vector<NamedTensor>& state);

  const std::vector<Parameter*>& params() const;

  // Sharded optimizer state (ZeRO-1, dist::DataParallel): step() then updates only the
  // parameters flagged here, and only they get state buffers; the others are another rank's.
  // An empty list (the default) owns every parameter. Throws ValueError for a list of another
  // length than params().
  void set_owned(std::vector<bool> owned);
  bool owns(std::size_t param) const { return owned_.empty() || owned_[param]; }
  // Parameter `param`'s state buffers in buffer order, made (as zeros) when missing: what a
  // rank exchanges to gather the whole state for a checkpoint. Throws ValueError for an index
  // out of range.
  std::vector<Tensor*> state_buffers(std::size_t param);
  // Frees the buffers of the parameters this optimizer does not own.
  void release_unowned_state();

  // Whether steps may update every parameter with one launch over a flat store. By default
  // only on a GPU, where launches cost: on the CPU one parallel loop over the store splits it
  // into contiguous halves, and when the state of the first layers goes denormal (Adam's
  // moments for MNIST's always-blank pixels) one thread gets most of the slow elements, which
  // measured 18 s against 15 s for mlp_mnist; one loop per tensor splits each evenly.
  void set_multi_tensor(bool on) {
    multi_tensor_ = on ? 1 : 0;
    ++launch_version_;
  }
  // Whether the last step did.
  bool multi_tensor_active() const { return flat_.active; }

  // Parameter groups with options of their own, as PyTorch's param_groups, expressed as
  // factors of the optimizer's: parameter `param` is updated with lr() x lr_scale and
  // weight_decay x decay_scale (1 and 1 until set). airbench's batch-norm biases take lr x 64
  // and weight decay / 64, for example; lr_scale 0 freezes a parameter from the next step on.
  // A flat store is kept, and a step launches one update per run of neighbouring parameters
  // with equal factors. Throws ValueError for an index out of range or a factor that is not
  // finite and >= 0.
  void set_param_scale(std::size_t param, double lr_scale, double decay_scale = 1.0);
  double lr_scale(std::size_t param) const { return scales_.empty() ? 1.0 : scales_[param].lr; }
  double decay_scale(std::size_t param) const { return scales_.empty() ? 1.0 : scales_[param].decay; }
  // Grows whenever something a kernel takes as an argument changes (set_param_scale, the flat
  // store built or given up, set_multi_tensor), so that a captured step can be captured again.
  std::int64_t launch_version() const { return launch_version_; }

  // The values of the coming step that change from step to step (the learning rate, Adam's
  // bias corrections) live in device memory, where the update kernels read them. This writes
  // them there (one small launch, only where they differ from what is there). step() calls it
  // itself; a loop that replays a captured step() calls it before the capture, so that no
  // write is captured, and before each replay, so that the replay reads this step's values.
  void upload_step_values();

 protected:
  // What one kernel launch updates: a contiguous run of values with their gradients and the
  // optimizer's buffers (in buffer_names() order; null where a buffer is not used).
  struct Run {
    float* value;
    const float* grad;
    std::int64_t n;
    std::vector<float*> buffers;
    Device device;
    double lr_scale = 1.0;     // set_param_scale's factors for these parameters
    double decay_scale = 1.0;
  };
  // The runs of this step: one over the flat store when it can be had, else one per owned
  // parameter. Call after check_params().
  std::vector<Run> runs();

  // The names of the per-parameter buffers this optimizer keeps, in a fixed order ({} for none).
  virtual std::vector<std::string> buffer_names() const = 0;

  // Checks every parameter as step() documents, before any update is enqueued.
  void check_params() const;
  // How many floats of step values each run's kernel reads, and those values for run `r` at
  // the coming step (number steps() + 1): {lr x the run's lr_scale} unless overridden.
  virtual std::size_t values_per_run() const { return 1; }
  virtual void run_values(const Run& r, float* out) const;
  // Uploads the runs' values (as upload_step_values) and gives where each run's values lie.
  std::vector<const float*> step_values(const std::vector<Run>& runs);
  // Buffer `which` (an index into buffer_names()) of parameter `param`, created as zeros on the
  // parameter's device at first use and moved there if the parameter has moved since.
  Tensor& buffer(std::size_t param, std::size_t which);

  std::vector<Parameter*> params_;
  double lr_ = 0.0;
  std::int64_t steps_ = 0;

 private:
  // Builds the flat store from the parameters' current tensors (false when it cannot be had).
  bool build_flat_store();
  // Whether every parameter and buffer still lies in the flat store where it was put.
  bool flat_store_intact() const;

  std::vector<std::vector<Tensor>> buffers_;  // [parameter][buffer], undefined until first use
  std::vector<bool> owned_;                   // empty: every parameter
  struct Scale {
    double lr = 1.0, decay = 1.0;
    bool operator==(const Scale&) const = default;
  };
  std::vector<Scale> scales_;  // [parameter]; empty: all 1
  std::int64_t launch_version_ = 0;
  std::vector<const void*> run_pointers_;  // what the last runs() pointed at
  // runs() without the check of what moved.
  std::vector<Run> current_runs();
  // Per device: the step values of its runs, and what was last written there.
  struct ValueSlots {
    Device device;
    Tensor values;
    std::vector<float> written;
  };
  std::vector<ValueSlots> value_slots_;
  int multi_tensor_ = -1;  // -1: on a GPU only; else as set_multi_tensor said
  struct FlatStore {
    bool active = false;
    Tensor value, grad;
    std::vector<Tensor> buffers;        // [buffer], each over every parameter
    std::vector<std::int64_t> offsets;  // [parameter]
  } flat_;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

struct AdagradOptions {
  double lr = 0.01;
  double eps = 1e-10;
  double weight_decay = 0;
};

struct RMSpropOptions {
  double lr = 0.01;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0;
  double momentum = 0;
};

struct AdadeltaOptions {
  double lr = 1.0;
  double rho = 0.9;
  double eps = 1e-6;
  double weight_decay = 0;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
};

// AdamW's own defaults: decoupled weight decay is the point of it.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

// Each constructor throws ValueError, naming the option and its value, for an invalid option,
// and as Optimizer's constructor does for bad parameters.

// SGD with momentum (buffer "momentum_buffer" when momentum != 0), dampening and Nesterov.
// lr, momentum, weight_decay >= 0; dampening finite; Nesterov needs momentum > 0 and no dampening.
class SGD final : public Optimizer {
 public:
  explicit SGD(std::vector<Parameter*> params, SGDOptions options = {});
  void step() override;
  std::string kind() const override { return "sgd"; }
  std::vector<std::pair<std::string, double>> hyperparameters() const override;

 protected:
  std::vector<std::string> buffer_names() const override;

 private:
  SGDOptions options_;
};

// Adagrad (buffer "sum"). lr, eps, weight_decay >= 0.
class Adagrad final : public Optimizer {
 public:
  explicit Adagrad(std::vector<Parameter*> params, AdagradOptions options = {});
  void step() override;
  std::string kind() const override { return "adagrad"; }
  std::vector<std::pair<std::string, double>> hyperparameters() const override;

 protected:
  std::vector<std::string> buffer_names() const override;

 private:
  AdagradOptions options_;
};

// RMSprop, not centred (buffers "square_avg", and "momentum_buffer" when momentum > 0).
// lr, eps, weight_decay, momentum >= 0; alpha in [0, 1].
class RMSprop final : public Optimizer {
 public:
  explicit RMSprop(std::vector<Parameter*> params, RMSpropOptions options = {});
  void step() override;
  std::string kind() const override { return "rmsprop"; }
  std::vector<std::pair<std::string, double>> hyperparameters() const override;

 protected:
  std::vector<std::string> buffer_names() const override;

 private:
  RMSpropOptions options_;
};

// Adadelta (buffers "square_avg", "acc_delta"). lr, eps, weight_decay >= 0; rho in [0, 1].
class Adadelta final : public Optimizer {
 public:
  explicit Adadelta(std::vector<Parameter*> params, AdadeltaOptions options = {});
  void step() override;
  std::string kind() const override { return "adadelta"; }
  std::vector<std::pair<std::string, double>> hyperparameters() const override;

 protected:
  std::vector<std::string> buffer_names() const override;

 private:
  AdadeltaOptions options_;
};

// Adam with L2 weight decay added to the gradient (buffers "exp_avg", "exp_avg_sq").
// lr, eps, weight_decay >= 0; beta1, beta2 in [0, 1).
class Adam : public Optimizer {
 public:
  explicit Adam(std::vector<Parameter*> params, AdamOptions options = {});
  void step() override;
  std::string kind() const override { return "adam"; }
  std::vector<std::pair<std::string, double>> hyperparameters() const override;

 protected:
  Adam(std::vector<Parameter*> params, AdamOptions options, bool decoupled, const char* kind);
  std::vector<std::string> buffer_names() const override;
  // {step size, sqrt of the second bias correction, decoupled decay factor}: kernels::adam_values.
  std::size_t values_per_run() const override { return 3; }
  void run_values(const Run& r, float* out) const override;

 private:
  AdamOptions options_;
  bool decoupled_ = false;
};

// Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr * weight_decay each step.
class AdamW final : public Adam {
 public:
  explicit AdamW(std::vector<Parameter*> params, AdamWOptions options = {});
  std::string kind() const override { return "adamw"; }
};

// Scales every gradient so that their global L2 norm (over all the tensors together) is at most
// max_norm, as PyTorch's clip_grad_norm_: each is multiplied by min(1, max_norm / (norm + 1e-6)).
// Runs on the device without waiting for it. Returns a 1-element f32 tensor on the parameters'
// device holding the norm before clipping. Throws ValueError when params is empty, holds a null
// pointer or a parameter without an f32 gradient, or max_norm is negative or NaN; DeviceError
// when the gradients are not all on one device. `reduce`, when given, gets the 1-element sum of
// squares before the norm is taken from it: ZeRO-1 passes each rank's share of the gradients and
// an all-reduce over the ranks, so the norm is the global one.
Tensor clip_grad_norm(const std::vector<Parameter*>& params, float max_norm,
                      const std::function<void(const Tensor& sum_of_squares)>& reduce = {});

// The optimizer `kind` ("sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw") with learning
// rate lr and defaults for every other option. Throws ValueError for an unknown kind (listing
// the valid ones) or a bad lr, and as the optimizer's constructor does.
std::unique_ptr<Optimizer> make_optimizer(const std::string& kind, std::vector<Parameter*> params, double lr);

}  // namespace gpudl
