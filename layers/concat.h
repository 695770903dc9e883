// Concat: parallel branches applied to the same input, joined along the channel axis (Inception-style).
#pragma once

#include <memory>
#include <type_traits>
#include <vector>

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

class Concat : public Module {
 public:
  template <class... M>
    requires(sizeof...(M) > 0 && (std::is_base_of_v<Module, std::decay_t<M>> && ...))
  explicit Concat(M&&... branches) {
    (branches_.push_back(std::make_unique<std::decay_t<M>>(std::forward<M>(branches))), ...);
    adopt_branches();
  }
  // The branches as built elsewhere (build_module); throws ValueError for none or a null one.
  explicit Concat(std::vector<std::unique_ptr<Module>> branches);

  // Branch outputs (N, C_i, ...) must agree on every axis but the channels (axis 1); throws
  // ShapeError naming the branch and both shapes otherwise.
  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  std::int64_t flops(const Shape& input) const override;
  // The receptive field of the first branch (branches usually see the same window centre,
  // and the widest branch bounds the field; see the summary's note).
  void update_receptive_field(ReceptiveField& field) const override;
  // "<branch index>.<name>".
  std::vector<Parameter*> parameters() override;
  std::vector<std::pair<std::string, Parameter*>> named_parameters() override;
  std::vector<std::pair<std::string, Tensor*>> buffers() override;
  std::vector<Generator*> generators() override;
  std::string capture_blocker() const override;
  void to(Device device) override;
  void set_training(bool training) override;
  void set_precision(Precision p) override;
  void set_backward_hook(BackwardHook hook) override;

 private:
  // Prefixes each branch's parameter names (those optimizers key by) with its index, once,
  // and turns the branches' input gradients on: the container always needs both to form its own.
  void adopt_branches();

  std::vector<std::unique_ptr<Module>> branches_;
  std::vector<std::int64_t> channels_;  // of each branch in the last forward
};

}  // namespace gpudl
