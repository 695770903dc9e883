// Residual: y = f(x) + shortcut(x), with an identity shortcut or a module (a 1×1 projection),
// and optionally ReLU after the sum.
#pragma once

#include <memory>
#include <type_traits>

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

class BatchNorm1d;

struct ResidualOptions {
  // y = ReLU(f(x) + shortcut(x)), as a basic block ends.
  bool relu = false;
};

// When f ends in a batch norm (its last module, or a Sequential's last), the sum and the ReLU
// run in that batch norm's own pass over memory, forward and backward: the shortcut runs
// first and its output is handed to the batch norm.
class Residual : public Module {
 public:
  // Identity shortcut: f must keep the shape of its input.
  template <class F>
    requires std::is_base_of_v<Module, std::decay_t<F>>
  explicit Residual(F&& main, ResidualOptions options = {})
      : Residual(std::make_unique<std::decay_t<F>>(std::forward<F>(main)), nullptr, options) {}
  // Projection shortcut (for example Conv2d 1×1 with stride, then BatchNorm2d).
  template <class F, class S>
    requires(std::is_base_of_v<Module, std::decay_t<F>> && std::is_base_of_v<Module, std::decay_t<S>>)
  Residual(F&& main, S&& shortcut, ResidualOptions options = {})
      : Residual(std::make_unique<std::decay_t<F>>(std::forward<F>(main)),
                 std::make_unique<std::decay_t<S>>(std::forward<S>(shortcut)), options) {}
  // Throws ValueError for a null main branch.
  Residual(std::unique_ptr<Module> main, std::unique_ptr<Module> shortcut, ResidualOptions options = {});

  // Throws ShapeError naming both shapes when the branches disagree.
  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  std::int64_t flops(const Shape& input) const override;
  void update_receptive_field(ReceptiveField& field) const override { main_->update_receptive_field(field); }
  // "main.<name>" and "shortcut.<name>".
  std::vector<Parameter*> parameters() override;
  std::vector<std::pair<std::string, Parameter*>> named_parameters() override;
  std::vector<std::pair<std::string, Tensor*>> buffers() override;
  std::vector<Generator*> generators() override;
  std::string capture_blocker() const override;
  void to(Device device) override;
  void set_training(bool training) override;
  void set_precision(Precision p) override;
  void set_backward_hook(BackwardHook hook) override;

  // Whether the sum (and ReLU) run inside the main branch's last batch norm.
  bool fused() const { return fused_ != nullptr; }

 private:
  std::unique_ptr<Module> main_, shortcut_;
  ResidualOptions options_;
  BatchNorm1d* fused_ = nullptr;  // main_'s last module, when it takes the sum
  Tensor output_;                 // unfused ReLU's output, for its mask
};

}  // namespace gpudl
