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

// LSTM, one element (row b, unit j). `gates` is row b of the (batch, 4 hidden) matrix: on
// entry the pre-activations x W_ihᵀ + h W_hhᵀ, on return the activated i, f, g, o that
// backward needs.
GPUDL_HD inline void lstm_forward_element(float* gates, float* h, float* c, float c_prev, const float* b_ih,
                                          const float* b_hh, index_t j, index_t hidden) {
  const index_t ii = j, fi = hidden + j, gi = 2 * hidden + j, oi = 3 * hidden + j;
  const float i = sigmoid(gates[ii] + b_ih[ii] + b_hh[ii]);
  const float f = sigmoid(gates[fi] + b_ih[fi] + b_hh[fi]);
  const float g = fast_tanh(gates[gi] + b_ih[gi] + b_hh[gi]);
  const float o = sigmoid(gates[oi] + b_ih[oi] + b_hh[oi]);
  const float cell = f * c_prev + i * g;
  gates[ii] = i;
  gates[fi] = f;
  gates[gi] = g;
  gates[oi] = o;
  *c = cell;
  *h = o * fast_tanh(cell);
}

// LSTM backward for one element: from dL/dh_t (output and next step together) and dL/dc_t
// from step t + 1, the pre-activation gradients (row b of (batch, 4 hidden)) and dL/dc_{t-1}.
GPUDL_HD inline void lstm_backward_element(float* dpre, float* dc_prev, float dh, float dc_next, const float* gates,
                                           float c_prev, float c, index_t j, index_t hidden) {
  const index_t ii = j, fi = hidden + j, gi = 2 * hidden + j, oi = 3 * hidden + j;
  const float i = gates[ii], f = gates[fi], g = gates[gi], o = gates[oi];
  const float tc = fast_tanh(c);
  const float dc = dc_next + dh * o * (1.0f - tc * tc);
  dpre[ii] = dc * g * i * (1.0f - i);
  dpre[fi] = dc * c_prev * f * (1.0f - f);
  dpre[gi] = dc * i * (1.0f - g * g);
  dpre[oi] = dh * tc * o * (1.0f - o);
  *dc_prev = dc * f;
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
  const float dn = dh * (1.0f - z) * (1.0f - n * n);
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
  return relu ? (h > 0.0f ? dh : 0.0f) : dh * (1.0f - h * h);
}

namespace cpu {
#include "gpudl/kernels/rnn.inc"
}  // namespace cpu

namespace cuda {
#include "gpudl/kernels/rnn.inc"
}  // namespace cuda

}  // namespace gpudl::kernels
