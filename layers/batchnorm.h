// BatchNorm1d and BatchNorm2d: per-channel normalisation of (N, C), (N, C, L) or (N, C, H, W)
// inputs with learned scale and shift.
#pragma once

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

struct BatchNormOptions {
  float eps = 1e-5f;
  float momentum = 0.1f;  // running = (1 - momentum) running + momentum batch
  // SyncBatchNorm: in train mode the statistics are those of the global batch, every rank's
  // samples together (the job's process group of the input's device; one process alone gets
  // its own batch's, through the same code). Each forward and backward then holds two and one
  // small all-reduces, so every rank must run the layer the same number of times.
  bool sync = false;
  // ReLU on the output, in the same pass over memory (backward too): BatchNorm2d(c, {.relu =
  // true}) computes what BatchNorm2d(c) followed by ReLU() does, and saves its output instead of
  // the ReLU layer's.
  bool relu = false;
};

// Train mode normalises with the batch's statistics and updates running averages; eval mode
// uses the running averages (Ioffe & Szegedy 2015).
class BatchNorm1d : public Module {
 public:
  // Throws ValueError for features < 1 or eps <= 0 or momentum outside [0, 1].
  explicit BatchNorm1d(std::int64_t features, BatchNormOptions options = {});

  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  std::int64_t flops(const Shape& input) const override { return 4 * input.numel(); }
  std::vector<Parameter*> parameters() override { return {&gamma_, &beta_}; }
  const BatchNormOptions& options() const { return options_; }
  std::string capture_blocker() const override {
    return options_.sync ? describe() + ": SyncBatchNorm's all-reduces are not captured" : "";
  }

  // Fusion with the Residual whose main branch ends in this layer (Residual calls these; a
  // model has no need to): from now on, forward adds the shortcut's output, given by
  // set_residual before each forward, before the activation, which becomes ReLU when `relu`;
  // backward leaves the shortcut's gradient for take_residual_grad().
  void fuse_residual(bool relu);
  bool takes_residual() const { return takes_residual_; }
  void set_residual(Tensor shortcut) { residual_ = std::move(shortcut); }
  Tensor take_residual_grad() { return std::move(residual_grad_); }
  // PyTorch's three: the running statistics and num_batches_tracked (i64, no axes: the train-mode
  // forwards so far, counted on the device so that replayed steps count too). Files written
  // before the count existed load without it (Module::load_state).
  std::vector<std::pair<std::string, Tensor*>> buffers() override {
    return {{"running_mean", &running_mean_}, {"running_var", &running_var_},
            {"num_batches_tracked", &num_batches_tracked_}};
  }

 protected:
  // The size of the axes after the channel axis, after checking x's shape fits this layer.
  virtual std::int64_t inner_of(const Tensor& x) const;

  std::int64_t features_;
  BatchNormOptions options_;
  Parameter gamma_, beta_;
  Tensor running_mean_, running_var_;
  Tensor num_batches_tracked_;
  Tensor input_, save_mean_, save_invstd_;
  Tensor sync_count_;  // global values per channel of the last synchronised forward
  // The fused epilogue: ReLU (options_.relu or a Residual's), the shortcut to add.
  bool relu_ = false, takes_residual_ = false;
  Tensor residual_, residual_grad_;
  Tensor output_;  // the forward's output, for the ReLU's mask
  std::string fusion_suffix() const;

 private:
  Tensor sync_forward(const Tensor& x, std::int64_t inner);
  Tensor sync_backward(const Tensor& dy);
  // The CUDA kernels' partial sums (kept between steps; undefined on the CPU).
  const Tensor& scratch_for(Device device, std::int64_t n, std::int64_t c, std::int64_t inner);
  Tensor scratch_;
};

// Per-channel batch normalisation of images (N, C, H, W): statistics over N, H and W.
class BatchNorm2d : public BatchNorm1d {
 public:
  explicit BatchNorm2d(std::int64_t channels, BatchNormOptions options = {}) : BatchNorm1d(channels, options) {}
  std::string describe() const override {
    return "BatchNorm2d(" + std::to_string(features_) + fusion_suffix() + ")";
  }
  Shape output_shape(const Shape& input) const override;

 protected:
  std::int64_t inner_of(const Tensor& x) const override;
};

}  // namespace gpudl
