// Loss: the interface of training criteria (the concrete losses live in layers/).
#pragma once

#include <string>

#include "gpudl/core/runtime/tensor.h"

namespace gpudl {

class Loss {
 public:
  virtual ~Loss() = default;
  // The mean loss over the batch as a 1-element f32 tensor on output's device (no host
  // synchronisation); keeps dL/doutput for backward(). Throws ShapeError naming both shapes
  // when the target does not fit the output, ValueError for a wrong dtype.
  virtual Tensor forward(const Tensor& output, const Tensor& target) = 0;
  // dL/doutput of the last forward. Throws Error if there was none.
  virtual Tensor backward() = 0;
  // Correct predictions in the last forward as a 1-element f32 device tensor, or an
  // undefined tensor for losses without a notion of accuracy.
  virtual Tensor correct() const { return {}; }
  virtual std::string describe() const = 0;
};

}  // namespace gpudl
