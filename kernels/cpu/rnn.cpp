// CPU implementations of the recurrent cell and embedding kernels, element by element
// through the shared math in rnn.h.
#include "gpudl/kernels/rnn.h"

#include <algorithm>
#include <string>

#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/error.h"

namespace gpudl::kernels::cpu {
namespace {

// Rows of a step per thread at least: a few thousand cell elements, ~50 µs of exp and tanh.
index_t row_grain(index_t hidden) { return std::max<index_t>(1, 4096 / std::max<index_t>(hidden, 1)); }

}  // namespace

void lstm_cell_forward(float* gates, float* h, float* c, const float* c_prev, const float* b_ih, const float* b_hh,
                       index_t batch, index_t hidden, const Exec&) {
  parallel_for(batch, row_grain(hidden), [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      for (index_t j = 0; j < hidden; ++j) {
        const index_t at = b * hidden + j;
        lstm_forward_element(gates + b * 4 * hidden, h + at, c + at, c_prev[at], b_ih, b_hh, j, hidden);
      }
    }
  });
}

void lstm_cell_backward(float* dpre, float* dc_prev, const float* dh, const float* dc_next, const float* gates,
                        const float* c_prev, const float* c, index_t batch, index_t hidden, const Exec&) {
  parallel_for(batch, row_grain(hidden), [&](index_t b0, index_t b1) {
    for (index_t b = b0; b < b1; ++b) {
      for (index_t j = 0; j < hidden; ++j) {
        const index_t at = b * hidden + j;
        lstm_backward_element(dpre + b * 4 * hidden, dc_prev + at, dh[at], dc_next[at], gates + b * 4 * hidden,
                              c_prev[at], c[at], j, hidden);
      }
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
