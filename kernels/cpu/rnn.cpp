// CPU implementations of the recurrent cell and embedding kernels, element by element
// through the shared math in rnn.h.
#include "gpudl/kernels/rnn.h"

#include <algorithm>
#include <string>

#include "gpudl/kernels/cpu/clones.h"
#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/error.h"

namespace gpudl::kernels::cpu {
namespace {

// Rows of a step per thread at least: a few thousand cell elements, ~50 µs of exp and tanh.
index_t row_grain(index_t hidden) { return std::max<index_t>(1, 4096 / std::max<index_t>(hidden, 1)); }

// One row of a step: the four gate blocks as separate restrict pointers (the arrays are
// distinct) and the branch-free exponentials of activation.h let these loops vectorise, with
// AVX-512 or AVX2 where the CPU has them (clones.h; 13% of char_rnn's step). Kept out of line:
// inlined into the thread pool's lambda, GCC lost the restrict and stayed scalar.
GPUDL_CPU_CLONES void lstm_forward_row(float* __restrict gi, float* __restrict gf, float* __restrict gg, float* __restrict go,
                      float* __restrict h, float* __restrict c, const float* __restrict c_prev,
                      const float* __restrict b_ih, const float* __restrict b_hh, index_t hidden) {
  const index_t H = hidden;
  for (index_t j = 0; j < H; ++j) {
    lstm_forward_element(gi[j], gf[j], gg[j], go[j], b_ih[j] + b_hh[j], b_ih[H + j] + b_hh[H + j],
                         b_ih[2 * H + j] + b_hh[2 * H + j], b_ih[3 * H + j] + b_hh[3 * H + j], c_prev[j], h[j], c[j]);
  }
}

// dc carries dL/dc_t in and leaves dL/dc_{t-1}, element by element in place: with every
// pointer restrict the loop vectorises (with dc_prev and dc_next as two pointers that may
// alias, GCC kept it scalar, and it cost as much as the forward row).
GPUDL_CPU_CLONES void lstm_backward_row(float* __restrict di, float* __restrict df, float* __restrict dg,
                                        float* __restrict dout, float* __restrict dc, const float* __restrict dh,
                                        const float* __restrict gi, const float* __restrict gf,
                                        const float* __restrict gg, const float* __restrict go,
                                        const float* __restrict c_prev, const float* __restrict c, index_t hidden) {
  for (index_t j = 0; j < hidden; ++j) {
    lstm_backward_element(di[j], df[j], dg[j], dout[j], dc[j], dh[j], dc[j], gi[j], gf[j], gg[j], go[j], c_prev[j],
                          c[j]);
  }
}

}  // namespace

void lstm_cell_forward(float* gates, float* h, float* c, const float* c_prev, const float* b_ih, const float* b_hh,
                       index_t batch, index_t hidden, const Exec&) {
  parallel_for(batch, row_grain(hidden), [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const index_t at = b * hidden;
      float* row = gates + b * 4 * hidden;
      lstm_forward_row(row, row + hidden, row + 2 * hidden, row + 3 * hidden, h + at, c + at, c_prev + at, b_ih, b_hh,
                       hidden);
    }
  });
}

void lstm_cell_backward(float* dpre, float* dc_prev, const float* dh, const float* dc_next, const float* gates,
                        const float* c_prev, const float* c, index_t batch, index_t hidden, const Exec&) {
  parallel_for(batch, row_grain(hidden), [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      const index_t at = b * hidden;
      float* d = dpre + b * 4 * hidden;
      const float* g = gates + b * 4 * hidden;
      if (dc_prev != dc_next) std::copy(dc_next + at, dc_next + at + hidden, dc_prev + at);
      lstm_backward_row(d, d + hidden, d + 2 * hidden, d + 3 * hidden, dc_prev + at, dh + at, g, g + hidden,
                        g + 2 * hidden, g + 3 * hidden, c_prev + at, c + at, hidden);
    }
  });
}

void gru_cell_forward(float* save, float* h, const float* xg, const float* hg, const float* h_prev,
                      const float* b_ih, const float* b_hh, index_t batch, index_t hidden, const Exec&) {
  parallel_for(batch, row_grain(hidden), [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      for (index_t j = 0; j < hidden; ++j) {
        const index_t at = b * hidden + j;
        gru_forward_element(save + b * 4 * hidden, h + at, xg + b * 3 * hidden, hg + b * 3 * hidden, h_prev[at], b_ih,
                            b_hh, j, hidden);
      }
    }
  });
}

void gru_cell_backward(float* dxg, float* dhg, float* dh_prev, const float* dh, const float* save,
                       const float* h_prev, index_t batch, index_t hidden, const Exec&) {
  parallel_for(batch, row_grain(hidden), [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      for (index_t j = 0; j < hidden; ++j) {
        const index_t at = b * hidden + j;
        gru_backward_element(dxg + b * 3 * hidden, dhg + b * 3 * hidden, dh_prev + at, dh[at], save + b * 4 * hidden,
                             h_prev[at], j, hidden);
      }
    }
  });
}

void rnn_cell_forward(float* h, const float* pre, const float* b_ih, const float* b_hh, index_t batch,
                      index_t hidden, bool relu, const Exec&) {
  for (index_t b = 0; b < batch; ++b) {
    for (index_t j = 0; j < hidden; ++j) {
      h[b * hidden + j] = rnn_forward_element(pre[b * hidden + j], b_ih[j], b_hh[j], relu);
    }
  }
}

void rnn_cell_backward(float* dpre, const float* dh, const float* h, index_t batch, index_t hidden, bool relu,
                       const Exec&) {
  for (index_t i = 0; i < batch * hidden; ++i) dpre[i] = rnn_backward_element(dh[i], h[i], relu);
}

namespace {

void check_id(std::int32_t id, index_t k, index_t vocab) {
  if (id < 0 || id >= vocab) {
    throw ValueError("embedding: id " + std::to_string(id) + " at position " + std::to_string(k) +
                     " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  }
}

}  // namespace

void embedding_forward(float* y, const std::int32_t* ids, const float* table, index_t n, index_t dim, index_t vocab,
                       const Exec&) {
  for (index_t k = 0; k < n; ++k) {
    check_id(ids[k], k, vocab);
    const float* row = table + static_cast<index_t>(ids[k]) * dim;
    std::copy(row, row + dim, y + k * dim);
  }
}

void embedding_backward(float* dtable, const std::int32_t* ids, const float* dy, index_t n, index_t dim,
                        index_t vocab, const Exec&) {
  for (index_t k = 0; k < n; ++k) {
    check_id(ids[k], k, vocab);
    float* row = dtable + static_cast<index_t>(ids[k]) * dim;
    for (index_t i = 0; i < dim; ++i) row[i] += dy[k * dim + i];
  }
}

void reverse_steps(float* dst, const float* src, index_t steps, index_t rows, const Exec&) {
  for (index_t s = 0; s < steps; ++s) std::copy(src + s * rows, src + (s + 1) * rows, dst + (steps - 1 - s) * rows);
}

}  // namespace gpudl::kernels::cpu
