// The nn facade for cuDNN's RNN API over whole recurrent stacks (CUDA builds, CUDA tensors): the
// weights are copied into cuDNN's packed weight space for each forward and the gradients back out.
#pragma once

#include <vector>

#include "gpudl/core/runtime/tensor.h"
#include "gpudl/kernels/dnn_rnn.h"

namespace gpudl::nn {

// Whether this build has the path at all (it needs CUDA and cuDNN).
bool dnn_rnn_built();

// What a forward leaves for its backward and for the next forward of the same shape (whose
// buffers it reuses, so a captured step allocates nothing): the packed weights, cuDNN's reserve
// space, and the device's copy of the sequence lengths.
struct DnnRnnState {
  kernels::DnnRnnShape shape;
  Tensor weights;  // u8, weight_space bytes
  Tensor reserve;  // u8, reserve_space bytes (training only)
  Tensor lengths;  // i32 (batch), each `steps`
};

// y (steps, batch, directions * hidden), hy and, for the LSTM, cy (layers * directions, batch,
// hidden) from x (steps, batch, input), the initial states h0 and c0 (undefined: zeros) and
// `weights`: per layer and then direction W_ih, W_hh, b_ih, b_hh, in PyTorch's shapes. All f32 on
// one CUDA device. Throws ValueError, ShapeError or DeviceError naming what does not fit, and what
// the kernels throw.
void dnn_rnn_forward(DnnRnnState& state, const kernels::DnnRnnShape& shape, bool training,
                     const std::vector<const Tensor*>& weights, const Tensor& x, const Tensor& y, const Tensor& h0,
                     const Tensor& hy, const Tensor& c0, const Tensor& cy);
// After a training forward with `state`: writes dx, dh0 and (LSTM) dc0 from dy, and adds each
// weight's gradient into `grads` (the order of `weights`).
void dnn_rnn_backward(const DnnRnnState& state, const std::vector<const Tensor*>& grads, const Tensor& x,
                      const Tensor& y, const Tensor& dy, const Tensor& h0, const Tensor& c0, const Tensor& dx,
                      const Tensor& dh0, const Tensor& dc0);

}  // namespace gpudl::nn
