// The nn facade for recurrent cells (batch rows, hidden units; PyTorch gate order), embeddings, time
// reversal: typed functions on Tensors that check dtype, device and shape, then run the kernel's CPU
// or CUDA twin chosen from the tensors' device.
// Conventions (all of core/nn/): outputs first, already shaped; "accumulates" adds into an output.
// Throws ValueError (undefined tensor, wrong dtype), DeviceError (tensors on different devices),
// ShapeError naming the function and shapes, and what the kernels throw (CudaError, OutOfMemoryError).
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/core/runtime/tensor.h"

namespace gpudl::nn {

// pre (batch, 4 hidden) holds x W_ih^T + h W_hh^T and is overwritten with the gates; h, c written.
void lstm_cell_forward(const Tensor& gates, const Tensor& h, const Tensor& c, const Tensor& c_prev,
                       const Tensor& b_ih, const Tensor& b_hh);
void lstm_cell_backward(const Tensor& dpre, const Tensor& dc_prev, const Tensor& dh, const Tensor& dc_next,
                        const Tensor& gates, const Tensor& c_prev, const Tensor& c);
void gru_cell_forward(const Tensor& save, const Tensor& h, const Tensor& xg, const Tensor& hg, const Tensor& h_prev,
                      const Tensor& b_ih, const Tensor& b_hh);
void gru_cell_backward(const Tensor& dxg, const Tensor& dhg, const Tensor& dh_prev, const Tensor& dh,
                       const Tensor& save, const Tensor& h_prev);
// h = act(pre + b_ih + b_hh), act tanh or ReLU.
void rnn_cell_forward(const Tensor& h, const Tensor& pre, const Tensor& b_ih, const Tensor& b_hh, bool relu);
void rnn_cell_backward(const Tensor& dpre, const Tensor& dh, const Tensor& h, bool relu);
// y (n, dim) = rows of table (vocab, dim) picked by i32 ids (n); ids must be in [0, vocab).
void embedding_forward(const Tensor& y, const Tensor& ids, const Tensor& table);
// dtable accumulates dy's rows at the ids.
void embedding_backward(const Tensor& dtable, const Tensor& ids, const Tensor& dy);

// dst = src with its first axis reversed (time reversal of (T, ...)).
void reverse_first_axis(const Tensor& dst, const Tensor& src);

}  // namespace gpudl::nn
