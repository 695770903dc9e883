// WeightAverage: an exponential moving average of a model's weights, for lookahead (airbench's
// recipe copies it back into the model every few steps) and for evaluating averaged weights.
#pragma once

#include <string>
#include <vector>

#include "gpudl/core/runtime/module.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl {

// Keeps an average of every f32 parameter and buffer of a model (batch-norm running statistics
// included, as PyTorch's state_dict holds them), on the model's devices. The model's tensors
// are looked up by name at every call, so an optimizer's flat store or a move to another device
// after construction is followed. Not thread-safe; the model must outlive it.
class WeightAverage {
 public:
  // Starts the average at the model's current values.
  explicit WeightAverage(Module& model);

  // average <- decay * average + (1 - decay) * model, enqueued on the devices' compute streams.
  // Throws ValueError for a decay outside [0, 1], and when the model's f32 entries are no longer
  // those it was made from (naming the first that differs).
  void update(double decay);
  // model <- average: lookahead's step back to the slow weights, or putting the averaged
  // weights in for evaluation.
  void copy_to_model();
  // Exchanges the model's values and the average's: done twice, both are back. Evaluating the
  // averaged weights between the two leaves training undisturbed.
  void swap_with_model();
  // update(decay) then copy_to_model(): one lookahead step.
  void lookahead(double decay) {
    update(decay);
    copy_to_model();
  }

  // The averages named prefix + the model's entry name, for a checkpoint (by reference: clone
  // to keep a snapshot).
  std::vector<NamedTensor> state(const std::string& prefix) const;
  // Restores what state(prefix) returned from `entries` (others are ignored). Checks all before
  // changing any: throws ValueError naming a missing entry, ShapeError a mismatched one.
  void load_state(const std::vector<NamedTensor>& entries, const std::string& prefix);

 private:
  // The model's f32 entries, in the order of names_, checked against them.
  std::vector<Tensor> live() const;

  Module& model_;
  std::vector<std::string> names_;
  std::vector<Tensor> average_;
};

}  // namespace gpudl
