// cuDNN's RNN API (v8) for whole recurrent stacks on CUDA, declared for g++ code. There is no CPU
// twin of these: the fused cells of rnn.h are the CPU path, and the GPU tests hold the two equal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gpudl/kernels/common.h"

namespace gpudl::kernels {

enum class DnnCell : std::uint8_t { kRnnTanh, kRnnRelu, kLstm, kGru };

// Gate blocks per weight matrix: 4 for the LSTM, 3 for the GRU, 1 for the Elman cell.
inline index_t dnn_gates(DnnCell cell) { return cell == DnnCell::kLstm ? 4 : cell == DnnCell::kGru ? 3 : 1; }

// One stack over one sequence batch: x (steps, batch, input) time-major, y (steps, batch,
// directions * hidden) with the directions side by side, states (layers * directions, batch,
// hidden). f32 data with FP32 math (no TF32), PyTorch's cells and gate order, both biases.
struct DnnRnnShape {
  DnnCell cell = DnnCell::kLstm;
  index_t input = 0, hidden = 0, layers = 1, directions = 1, steps = 0, batch = 0;

  bool operator==(const DnnRnnShape&) const = default;
};

// The byte sizes cuDNN asks for.
struct DnnRnnSizes {
  std::size_t weight_space = 0;   // the packed weights, and alike their gradients
  std::size_t workspace = 0;      // scratch for one call, taken from Exec::scratch
  std::size_t reserve_space = 0;  // kept from a training forward to its backward
};

// Where each block of the PyTorch-shaped weights sits in the weight space, in floats from its
// start. For pseudo-layer p = layer * directions + direction and linear layer k in [0, 2G)
// (k < G: gate k's rows of W_ih and of b_ih; k >= G: gate k - G's rows of W_hh and of b_hh),
// entry p * 2G + k of `matrix` (a gate's (hidden, in) rows, row-major as PyTorch keeps them) and
// of `bias` (hidden values).
struct DnnRnnLayout {
  std::vector<index_t> matrix, bias;
};

// One copy of `count` floats: dst = src, or dst += src.
struct CopySpan {
  const float* src;
  float* dst;
  index_t count;
};

#if GPUDL_WITH_CUDA
namespace cuda {

// Each throws ValueError for sizes below 1 or beyond cuDNN's int range and for an Exec without a
// cuDNN handle or scratch memory, CudaError for a failed cuDNN call, OutOfMemoryError when its
// workspace does not fit. A shape's descriptors are made on first use and kept for the process.
DnnRnnSizes dnn_rnn_sizes(const DnnRnnShape& shape, bool training, const Exec& exec);
// Checks each block's shape as cuDNN reports it against PyTorch's; throws CudaError otherwise.
DnnRnnLayout dnn_rnn_layout(const DnnRnnShape& shape, const Exec& exec);

// `seq_lengths`: `batch` device int32 values, each `steps` (every sequence is full length).
// hx, cx: the initial states, nullptr for zeros; cx and cy only for the LSTM (else nullptr).
// `reserve` (reserve_space bytes) is written in training and read by the two backwards.
void dnn_rnn_forward(const DnnRnnShape& shape, bool training, const std::int32_t* seq_lengths, const float* x, float* y,
                     const float* hx, float* hy, const float* cx, float* cy, const void* weights, void* reserve,
                     const Exec& exec);
// dx, dhx (and dcx for the LSTM) from dy alone: the final states' gradients are taken as zero.
void dnn_rnn_backward_data(const DnnRnnShape& shape, const std::int32_t* seq_lengths, const float* y, const float* dy,
                           float* dx, const float* hx, float* dhx, const float* cx, float* dcx, const void* weights,
                           void* reserve, const Exec& exec);
// Adds the weight gradients into `dweights` (weight_space bytes); after backward_data.
void dnn_rnn_backward_weights(const DnnRnnShape& shape, const std::int32_t* seq_lengths, const float* x,
                              const float* hx, const float* y, void* dweights, void* reserve, const Exec& exec);

// All of `spans` in as few launches as their count allows (dst += src with `accumulate`). The
// spans' memory must not overlap.
void copy_spans(const CopySpan* spans, index_t count, bool accumulate, const Exec& exec);

}  // namespace cuda
#endif

}  // namespace gpudl::kernels
