// CPU reference implementations of the axis reductions (double accumulation for sums).
#include "gpudl/kernels/reduce.h"

#include <algorithm>
#include <vector>

#include "gpudl/kernels/cpu/clones.h"
#include "gpudl/kernels/cpu/convert.h"
#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/dispatch.h"

namespace gpudl::kernels::cpu {

void reduce_sum(float* out, const float* in, index_t outer, index_t axis_len, index_t inner, const Exec&) {
  for (index_t o = 0; o < outer; ++o) {
    for (index_t i = 0; i < inner; ++i) {
      double acc = 0.0;
      for (index_t a = 0; a < axis_len; ++a) acc += in[(o * axis_len + a) * inner + i];
      out[o * inner + i] = static_cast<float>(acc);
    }
  }
}

void reduce_mean(float* out, const float* in, index_t outer, index_t axis_len, index_t inner, const Exec&) {
  for (index_t o = 0; o < outer; ++o) {
    for (index_t i = 0; i < inner; ++i) {
      double acc = 0.0;
      for (index_t a = 0; a < axis_len; ++a) acc += in[(o * axis_len + a) * inner + i];
      out[o * inner + i] = static_cast<float>(acc / static_cast<double>(axis_len));
    }
  }
}

void reduce_max(float* out, const float* in, index_t outer, index_t axis_len, index_t inner, const Exec&) {
  for (index_t o = 0; o < outer; ++o) {
    for (index_t i = 0; i < inner; ++i) {
      float best = in[o * axis_len * inner + i];
      for (index_t a = 1; a < axis_len; ++a) {
        const float v = in[(o * axis_len + a) * inner + i];
        if (argmax_prefers(v, a, best, 0)) best = v;
      }
      out[o * inner + i] = best;
    }
  }
}

void reduce_argmax(std::int64_t* out, const float* in, index_t outer, index_t axis_len, index_t inner,
                   const Exec&) {
  for (index_t o = 0; o < outer; ++o) {
    for (index_t i = 0; i < inner; ++i) {
      float best = in[o * axis_len * inner + i];
      index_t best_index = 0;
      for (index_t a = 1; a < axis_len; ++a) {
        const float v = in[(o * axis_len + a) * inner + i];
        if (argmax_prefers(v, a, best, best_index)) {
          best = v;
          best_index = a;
        }
      }
      out[o * inner + i] = best_index;
    }
  }
}

}  // namespace gpudl::kernels::cpu

namespace gpudl::kernels::cpu {
namespace {

// Out of line with restrict pointers, so it vectorises (inside the pool's lambda it did not).
GPUDL_CPU_CLONES void add_row_to_double(double* __restrict acc, const float* __restrict row, index_t n) {
  for (index_t c = 0; c < n; ++c) acc[c] += row[c];
}

}  // namespace

void column_sum_add(float* out, const void* x, DType type, index_t rows, index_t cols, const Exec&) {
  // Row by row into one double per column: the same additions in the same order as a column
  // walk, but contiguous and vectorised (the column walk was a fifth of an LSTM step). Threads
  // take column ranges, so each column's order stays fixed; small sums stay on one thread.
  const index_t grain = std::max<index_t>(16, (index_t{1} << 16) / std::max<index_t>(rows, 1));
  detail::require_floating(type, "column_sum_add");
  parallel_for(cols, grain, [&](index_t c0, index_t c1) {
    std::vector<double> acc(static_cast<std::size_t>(c1 - c0), 0.0);
    // bf16/f16 rows are widened (exactly, vectorised) into one FP32 row first.
    std::vector<float> row(type == DType::kF32 ? 0 : static_cast<std::size_t>(c1 - c0));
    for (index_t r = 0; r < rows; ++r) {
      const float* src = row.data();
      if (type == DType::kF32) {
        src = static_cast<const float*>(x) + r * cols + c0;
      } else {
        widen_to_f32(row.data(), x, type, r * cols + c0, c1 - c0);
      }
      add_row_to_double(acc.data(), src, c1 - c0);
    }
    for (index_t c = c0; c < c1; ++c) out[c] += static_cast<float>(acc[static_cast<std::size_t>(c - c0)]);
  });
}

}  // namespace gpudl::kernels::cpu
