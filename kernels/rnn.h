// Recurrent cells (Elman RNN, LSTM, GRU) and embeddings: the per-element math of one time
// step, written once here for both backends, and the fused cell kernels declared for each.
#pragma once

#include <cmath>
#include <cstdint>

#include "gpudl/kernels/activation.h"
#include "gpudl/kernels/common.h"

namespace gpudl::kernels {

// Gate layout follows PyTorch's, so weights convert one to one: rows of W_ih / W_hh are
// [i, f, g, o] blocks of `hidden` for the LSTM and [r, z, n] blocks for the GRU.
//
// Pre-activations arrive without biases (they come from GEMMs); each cell adds b_ih + b_hh
// itself, which saves a pass over the (batch, gates * hidden) matrix per time step.

// LSTM, one element (row b, unit j). i, f, g, o are that element of the four gate blocks of
// row b of the (batch, 4 hidden) matrix: on entry the pre-activations x W_ihᵀ + h W_hhᵀ, on
// return the activated gates that backward needs; b_* are b_ih + b_hh of each gate. Taking
// the four values rather than the row and an offset lets CPU loops over j vectorise.
GPUDL_HD inline void lstm_forward_element(float& i, float& f, float& g, float& o, float b_i, float b_f, float b_g,
                                          float b_o, float c_prev, float& h, float& c) {
  i = sigmoid(i + b_i);
  f = sigmoid(f + b_f);
  g = fast_tanh(g + b_g);
  o = sigmoid(o + b_o);
  c = f * c_prev + i * g;
  h = o * fast_tanh(c);
}

// LSTM backward for one element: from dL/dh_t (output and next step together) and dL/dc_t
// from step t + 1, the pre-activation gradients of the four gates and dL/dc_{t-1}.
GPUDL_HD inline void lstm_backward_element(float& d_i, float& d_f, float& d_g, float& d_o, float& dc_prev, float dh,
                                           float dc_next, float i, float f, float g, float o, float c_prev, float c) {
  const float tc = fast_tanh(c);
  const float dc = dc_next + dh * o * ((1.0f - tc) * (1.0f + tc));
  d_i = dc * g * i * (1.0f - i);
  d_f = dc * c_prev * f * (1.0f - f);
  d_g = dc * i * ((1.0f - g) * (1.0f + g));
  d_o = dh * tc * o * (1.0f - o);
  dc_prev = dc * f;
}

// GRU (PyTorch's form: n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn)), h' = (1 - z) n + z h),
// one element. xg and hg are row b of the (batch, 3 hidden) input and hidden projections;
// `save` is row b of (batch, 4 hidden) and receives r, z, n and h W_hnᵀ + b_hn for backward.
GPUDL_HD inline void gru_forward_element(float* save, float* h, const float* xg, const float* hg, float h_prev,
                                         const float* b_ih, const float* b_hh, index_t j, index_t hidden) {
  const index_t ri = j, zi = hidden + j, ni = 2 * hidden + j;
  const float r = sigmoid(xg[ri] + b_ih[ri] + hg[ri] + b_hh[ri]);
  const float z = sigmoid(xg[zi] + b_ih[zi] + hg[zi] + b_hh[zi]);
  const float hn = hg[ni] + b_hh[ni];
  const float n = fast_tanh(xg[ni] + b_ih[ni] + r * hn);
  save[j] = r;
  save[hidden + j] = z;
  save[2 * hidden + j] = n;
  save[3 * hidden + j] = hn;
  *h = (1.0f - z) * n + z * h_prev;
}

// GRU backward for one element: dL/d(xg) and dL/d(hg) (rows of (batch, 3 hidden); they differ
// only in the n block) and the direct part of dL/dh_{t-1}, dh z; the caller adds dL/d(hg) W_hh.
GPUDL_HD inline void gru_backward_element(float* dxg, float* dhg, float* dh_prev, float dh, const float* save,
                                          float h_prev, index_t j, index_t hidden) {
  const index_t ri = j, zi = hidden + j, ni = 2 * hidden + j;
  const float r = save[j], z = save[hidden + j], n = save[2 * hidden + j], hn = save[3 * hidden + j];
  const float dn = dh * (1.0f - z) * ((1.0f - n) * (1.0f + n));
  const float dz = dh * (h_prev - n) * z * (1.0f - z);
  const float dr = dn * hn * r * (1.0f - r);
  dxg[ri] = dr;
  dhg[ri] = dr;
  dxg[zi] = dz;
  dhg[zi] = dz;
  dxg[ni] = dn;
  dhg[ni] = dn * r;
  *dh_prev = dh * z;
}

// Elman cell: h = act(pre + b_ih + b_hh) with tanh or ReLU.
GPUDL_HD inline float rnn_forward_element(float pre, float b_ih, float b_hh, bool relu) {
  const float v = pre + b_ih + b_hh;
  return relu ? (v > 0.0f || v != v ? v : 0.0f) : fast_tanh(v);
}

GPUDL_HD inline float rnn_backward_element(float dh, float h, bool relu) {
  return relu ? (h > 0.0f ? dh : 0.0f) : dh * ((1.0f - h) * (1.0f + h));
}

namespace cpu {
#include "gpudl/kernels/rnn.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/rnn.inc"
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
