// CUDA recurrent cell and embedding kernels; twins of kernels/cpu/rnn.cpp. One thread per
// (row, unit) element of a time step, through the per-element math shared in rnn.h; the
// GEMMs around each step go to cuBLAS from the layers.
#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/rnn.h"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels

#define GPUDL_FOR_EACH(i, n)                                                      \
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<index_t>(gridDim.x) * blockDim.x)

__global__ void lstm_forward_kernel(float* gates, float* h, float* c, const float* c_prev, const float* b_ih,
                                    const float* b_hh, index_t batch, index_t hidden) {
  GPUDL_FOR_EACH(at, batch * hidden) {
    const index_t b = at / hidden, j = at % hidden, H = hidden;
    float* row = gates + b * 4 * H;
    lstm_forward_element(row[j], row[H + j], row[2 * H + j], row[3 * H + j], b_ih[j] + b_hh[j],
                         b_ih[H + j] + b_hh[H + j], b_ih[2 * H + j] + b_hh[2 * H + j],
                         b_ih[3 * H + j] + b_hh[3 * H + j], c_prev[at], h[at], c[at]);
  }
}

__global__ void lstm_backward_kernel(float* dpre, float* dc_prev, const float* dh, const float* dc_next,
                                     const float* gates, const float* c_prev, const float* c, index_t batch,
                                     index_t hidden) {
  GPUDL_FOR_EACH(at, batch * hidden) {
    const index_t b = at / hidden, j = at % hidden, H = hidden;
    float* d = dpre + b * 4 * H;
    const float* g = gates + b * 4 * H;
    lstm_backward_element(d[j], d[H + j], d[2 * H + j], d[3 * H + j], dc_prev[at], dh[at], dc_next[at], g[j],
                          g[H + j], g[2 * H + j], g[3 * H + j], c_prev[at], c[at]);
  }
}

__global__ void gru_forward_kernel(float* save, float* h, const float* xg, const float* hg, const float* h_prev,
                                   const float* b_ih, const float* b_hh, index_t batch, index_t hidden) {
  GPUDL_FOR_EACH(at, batch * hidden) {
    const index_t b = at / hidden, j = at % hidden;
    gru_forward_element(save + b * 4 * hidden, h + at, xg + b * 3 * hidden, hg + b * 3 * hidden, h_prev[at], b_ih,
                        b_hh, j, hidden);
  }
}

__global__ void gru_backward_kernel(float* dxg, float* dhg, float* dh_prev, const float* dh, const float* save,
                                    const float* h_prev, index_t batch, index_t hidden) {
  GPUDL_FOR_EACH(at, batch * hidden) {
    const index_t b = at / hidden, j = at % hidden;
    gru_backward_element(dxg + b * 3 * hidden, dhg + b * 3 * hidden, dh_prev + at, dh[at], save + b * 4 * hidden,
                         h_prev[at], j, hidden);
  }
}

__global__ void rnn_forward_kernel(float* h, const float* pre, const float* b_ih, const float* b_hh, index_t batch,
                                   index_t hidden, bool relu) {
  GPUDL_FOR_EACH(at, batch * hidden) {
    const index_t j = at % hidden;
    h[at] = rnn_forward_element(pre[at], b_ih[j], b_hh[j], relu);
  }
}

__global__ void rnn_backward_kernel(float* dpre, const float* dh, const float* h, index_t n, bool relu) {
  GPUDL_FOR_EACH(i, n) { dpre[i] = rnn_backward_element(dh[i], h[i], relu); }
}

__global__ void embedding_forward_kernel(float* y, const std::int32_t* ids, const float* table, index_t n,
                                         index_t dim, index_t vocab) {
  GPUDL_FOR_EACH(i, n * dim) {
    const index_t k = i / dim, d = i % dim;
    const std::int32_t id = ids[k];
    y[i] = id >= 0 && id < vocab ? table[static_cast<index_t>(id) * dim + d] : 0.0f;
  }
}

__global__ void embedding_backward_kernel(float* dtable, const std::int32_t* ids, const float* dy, index_t n,
                                          index_t dim, index_t vocab) {
  GPUDL_FOR_EACH(i, n * dim) {
    const index_t k = i / dim, d = i % dim;
    const std::int32_t id = ids[k];
    if (id >= 0 && id < vocab) atomicAdd(dtable + static_cast<index_t>(id) * dim + d, dy[i]);
  }
}

// Deterministic mode: one thread per table element, adding its rows' gradients in row order
// (O(vocab · dim · n) reads of the ids, against n · dim atomics in any order).
__global__ void embedding_backward_ordered_kernel(float* dtable, const std::int32_t* ids, const float* dy, index_t n,
                                                  index_t dim, index_t vocab) {
  GPUDL_FOR_EACH(j, vocab * dim) {
    const index_t v = j / dim, d = j % dim;
    float sum = 0.0f;
    for (index_t k = 0; k < n; ++k) {
      if (ids[k] == v) sum += dy[k * dim + d];
    }
    dtable[j] += sum;
  }
}

__global__ void reverse_steps_kernel(float* dst, const float* src, index_t steps, index_t rows) {
  GPUDL_FOR_EACH(i, steps * rows) {
    const index_t s = i / rows, r = i % rows;
    dst[(steps - 1 - s) * rows + r] = src[i];
  }
}

#undef GPUDL_FOR_EACH

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

void lstm_cell_forward(float* gates, float* h, float* c, const float* c_prev, const float* b_ih, const float* b_hh,
                       index_t batch, index_t hidden, const Exec& exec) {
  if (batch * hidden == 0) return;
  lstm_forward_kernel<<<detail::grid_for(batch * hidden), detail::kBlock, 0, detail::stream_of(exec)>>>(
      gates, h, c, c_prev, b_ih, b_hh, batch, hidden);
  GPUDL_CHECK_LAUNCH();
}

void lstm_cell_backward(float* dpre, float* dc_prev, const float* dh, const float* dc_next, const float* gates,
                        const float* c_prev, const float* c, index_t batch, index_t hidden, const Exec& exec) {
  if (batch * hidden == 0) return;
  lstm_backward_kernel<<<detail::grid_for(batch * hidden), detail::kBlock, 0, detail::stream_of(exec)>>>(
      dpre, dc_prev, dh, dc_next, gates, c_prev, c, batch, hidden);
  GPUDL_CHECK_LAUNCH();
}

void gru_cell_forward(float* save, float* h, const float* xg, const float* hg, const float* h_prev,
                      const float* b_ih, const float* b_hh, index_t batch, index_t hidden, const Exec& exec) {
  if (batch * hidden == 0) return;
  gru_forward_kernel<<<detail::grid_for(batch * hidden), detail::kBlock, 0, detail::stream_of(exec)>>>(
      save, h, xg, hg, h_prev, b_ih, b_hh, batch, hidden);
  GPUDL_CHECK_LAUNCH();
}

void gru_cell_backward(float* dxg, float* dhg, float* dh_prev, const float* dh, const float* save,
                       const float* h_prev, index_t batch, index_t hidden, const Exec& exec) {
  if (batch * hidden == 0) return;
  gru_backward_kernel<<<detail::grid_for(batch * hidden), detail::kBlock, 0, detail::stream_of(exec)>>>(
      dxg, dhg, dh_prev, dh, save, h_prev, batch, hidden);
  GPUDL_CHECK_LAUNCH();
}

void rnn_cell_forward(float* h, const float* pre, const float* b_ih, const float* b_hh, index_t batch,
                      index_t hidden, bool relu, const Exec& exec) {
  if (batch * hidden == 0) return;
  rnn_forward_kernel<<<detail::grid_for(batch * hidden), detail::kBlock, 0, detail::stream_of(exec)>>>(
      h, pre, b_ih, b_hh, batch, hidden, relu);
  GPUDL_CHECK_LAUNCH();
}

void rnn_cell_backward(float* dpre, const float* dh, const float* h, index_t batch, index_t hidden, bool relu,
                       const Exec& exec) {
  if (batch * hidden == 0) return;
  rnn_backward_kernel<<<detail::grid_for(batch * hidden), detail::kBlock, 0, detail::stream_of(exec)>>>(
      dpre, dh, h, batch * hidden, relu);
  GPUDL_CHECK_LAUNCH();
}

void embedding_forward(float* y, const std::int32_t* ids, const float* table, index_t n, index_t dim, index_t vocab,
                       const Exec& exec) {
  if (n * dim == 0) return;
  embedding_forward_kernel<<<detail::grid_for(n * dim), detail::kBlock, 0, detail::stream_of(exec)>>>(
      y, ids, table, n, dim, vocab);
  GPUDL_CHECK_LAUNCH();
}

void embedding_backward(float* dtable, const std::int32_t* ids, const float* dy, index_t n, index_t dim,
                        index_t vocab, const Exec& exec) {
  if (n * dim == 0) return;
  if (exec.deterministic) {
    embedding_backward_ordered_kernel<<<detail::grid_for(vocab * dim), detail::kBlock, 0, detail::stream_of(exec)>>>(
        dtable, ids, dy, n, dim, vocab);
  } else {
    embedding_backward_kernel<<<detail::grid_for(n * dim), detail::kBlock, 0, detail::stream_of(exec)>>>(
        dtable, ids, dy, n, dim, vocab);
  }
  GPUDL_CHECK_LAUNCH();
}

void reverse_steps(float* dst, const float* src, index_t steps, index_t rows, const Exec& exec) {
  if (steps * rows == 0) return;
  reverse_steps_kernel<<<detail::grid_for(steps * rows), detail::kBlock, 0, detail::stream_of(exec)>>>(
      dst, src, steps, rows);
  GPUDL_CHECK_LAUNCH();
}

}  // namespace gpudl::kernels::cuda
