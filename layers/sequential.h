// Sequential: runs its modules in order forward and in reverse order backward; prints summaries.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

class Sequential : public Module {
 public:
  Sequential() = default;
  // Takes modules by value: Sequential{Linear(784, 512), ReLU(), Linear(512, 10)}.
  template <class... M>
    requires(sizeof...(M) > 0 && (std::is_base_of_v<Module, std::decay_t<M>> && ...))
  explicit Sequential(M&&... modules) {
    (add(std::forward<M>(modules)), ...);
  }

  template <class M>
    requires std::is_base_of_v<Module, std::decay_t<M>>
  Sequential& add(M&& module) {
    return add(std::unique_ptr<Module>(std::make_unique<std::decay_t<M>>(std::forward<M>(module))));
  }
  // The module joins on this container's device and mode. Throws ValueError for null.
  Sequential& add(std::unique_ptr<Module> module);

  std::size_t size() const { return children_.size(); }
  Module& operator[](std::size_t i) { return *children_.at(i); }

  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override;
  Shape output_shape(const Shape& input) const override;
  std::int64_t flops(const Shape& input) const override;
  void update_receptive_field(ReceptiveField& field) const override;
  // Children's parameters and buffers, prefixed "<index>." ("0.weight").
  std::vector<Parameter*> parameters() override;
  std::vector<std::pair<std::string, Parameter*>> named_parameters() override;
  std::vector<std::pair<std::string, Tensor*>> buffers() override;
  std::vector<Generator*> generators() override;
  std::string capture_blocker() const override;
  void to(Device device) override;
  void set_training(bool training) override;
  void set_precision(Precision p) override;
  void set_backward_hook(BackwardHook hook) override;
  // Off: the leading children up to and including the first with parameters get it off too
  // (their outputs then need no gradient either); backward stops after that child and returns
  // an undefined tensor. The rule is applied again on every add and every forward, so later
  // children and settings made on a child directly cannot leave a stale cut.
  void set_input_grad(bool on) override;

  // A table of each layer's output shape, parameter count, FLOPs and receptive field (size,
  // jump, start in input pixels) for one sample of shape `input` (no batch axis), with
  // totals. Throws ShapeError where a layer does not fit.
  std::string summary(const Shape& input);

 private:
  void apply_input_grad();

  std::vector<std::unique_ptr<Module>> children_;
  // Backward's last child when the input gradient is off (-1: all of them).
  std::ptrdiff_t stop_ = -1;
};

}  // namespace gpudl
