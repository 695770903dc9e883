// Dropout: zeroes each element with probability p in train mode (inverted scaling), identity in eval.
#pragma once

#include "gpudl/core/io/onnx.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

class Dropout : public Module {
 public:
  // p in [0, 1); the mask stream is seeded from `seed`, or from default_generator() when 0.
  // Throws ValueError for p outside [0, 1).
  explicit Dropout(float p = 0.5f, std::uint64_t seed = 0);

  Tensor forward(const Tensor& x) override;
  Tensor backward(const Tensor& grad_output) override;
  OnnxValue to_onnx(OnnxGraph& graph, const OnnxValue& x) override;
  json::Value config() const override;
  std::string describe() const override;
  std::int64_t flops(const Shape& input) const override { return input.numel(); }
  std::vector<Generator*> generators() override { return {&generator_}; }

 private:
  float p_;
  Generator generator_;
  Tensor mask_;
  bool kept_ = false;  // the last forward was in train mode, so backward may follow
  bool identity_ = false;  // the last forward passed x through (eval mode or p = 0)
  // On a GPU the mask's offset is read from device memory and counted up there, so a captured
  // step's replays draw fresh masks. The host generator stays the truth: its device_offset()
  // says what this copy holds, and the copy is written (outside any capture) when they differ.
  // Whoever replays a captured forward advances the generator by what the capture reserved
  // (Generator::advance), as the Trainer does after each replay.
  Tensor offset_;  // i64 [1] on the device
};

}  // namespace gpudl
