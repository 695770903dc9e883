// CPU GEMM through OpenBLAS's CBLAS interface (row-major), large products split over threads.
#include "gpudl/kernels/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <vector>

#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/cpu/scratch.h"
#include "gpudl/kernels/elementwise.h"
#include "gpudl/kernels/error.h"

namespace gpudl::kernels::cpu {
namespace {

CBLAS_TRANSPOSE to_cblas(Transpose t) { return t == Transpose::kYes ? CblasTrans : CblasNoTrans; }

blasint to_blasint(index_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<blasint>::max()) {
    throw ValueError(std::string("gemm: ") + what + " = " + std::to_string(v) + " is out of OpenBLAS's range");
  }
  return static_cast<blasint>(v);
}

// k == 0 makes op(A)·op(B) an empty sum: C = beta * C (zeroed, not scaled, when beta == 0).
void scale_c(index_t m, index_t n, float beta, float* c, index_t ldc) {
  for (index_t i = 0; i < m; ++i) {
    for (index_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
  }
}

// Elements a row-major matrix of `rows` rows, `cols` columns and row stride ld spans.
index_t span(index_t rows, index_t cols, index_t ld) { return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols; }

// An FP32 copy of a span of `type` in `buffer` (the span itself when it is FP32 already).
const float* widened(std::optional<FloatScratch>& buffer, const void* p, DType type, index_t count,
                     const Exec& exec) {
  if (type == DType::kF32) return static_cast<const float*>(p);
  buffer.emplace(exec, count);
  cast(buffer->data(), DType::kF32, p, type, count, exec);
  return buffer->data();
}

}  // namespace

void gemm(Transpose trans_a, Transpose trans_b, index_t m, index_t n, index_t k, float alpha, const float* a,
          index_t lda, const float* b, index_t ldb, float beta, float* c, index_t ldc, const Exec&) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const blasint bk = to_blasint(k, "k"), blda = to_blasint(lda, "lda"), bldb = to_blasint(ldb, "ldb");
  const blasint bldc = to_blasint(ldc, "ldc");
  to_blasint(m, "m");
  to_blasint(n, "n");
  auto call = [&](index_t rows, index_t cols, const float* pa, const float* pb, float* pc) {
    cblas_sgemm(CblasRowMajor, to_cblas(trans_a), to_cblas(trans_b), static_cast<blasint>(rows),
                static_cast<blasint>(cols), bk, alpha, pa, blda, pb, bldb, beta, pc, bldc);
  };
  // OpenBLAS runs single-threaded (parallel.h); a large product is cut into slabs of C, one
  // per thread, along its longer side. The cut depends only on the shape and the thread
  // count, so results repeat from run to run.
  constexpr double kParallelFlops = 4e6;  // about 50 µs on one core: worth waking a helper
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (flops < kParallelFlops || cpu_threads() == 1) {
    call(m, n, a, b, c);
    return;
  }
  constexpr index_t kAlign = 16;  // slab edges on multiples of OpenBLAS's register blocks
  if (m >= n) {
    const index_t blocks = (m + kAlign - 1) / kAlign;
    parallel_for(blocks, 1, [&](index_t b0, index_t b1) {
      const index_t r0 = b0 * kAlign, r1 = std::min(m, b1 * kAlign);
      const float* pa = trans_a == Transpose::kNo ? a + r0 * lda : a + r0;
      call(r1 - r0, n, pa, b, c + r0 * ldc);
    });
  } else {
    const index_t blocks = (n + kAlign - 1) / kAlign;
    parallel_for(blocks, 1, [&](index_t b0, index_t b1) {
      const index_t c0 = b0 * kAlign, c1 = std::min(n, b1 * kAlign);
      const float* pb = trans_b == Transpose::kNo ? b + c0 : b + c0 * ldb;
      call(m, c1 - c0, a, pb, c + c0);
    });
  }
}

void gemm_strided_batched(Transpose trans_a, Transpose trans_b, index_t m, index_t n, index_t k, float alpha,
                          const float* a, index_t lda, index_t stride_a, const float* b, index_t ldb,
                          index_t stride_b, float beta, float* c, index_t ldc, index_t stride_c, index_t batch,
                          const Exec& exec) {
  for (index_t i = 0; i < batch; ++i) {
    gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c,
         ldc, exec);
  }
}

void gemm_ex(Transpose trans_a, Transpose trans_b, index_t m, index_t n, index_t k, float alpha, DType ab,
             const void* a, index_t lda, const void* b, index_t ldb, float beta, DType c_type, void* c, index_t ldc,
             bool /*tf32*/, const Exec& exec) {
  if (!is_floating(ab) || !(c_type == DType::kF32 || c_type == ab)) {
    throw ValueError(std::string("gemm_ex: operands of dtype ") + dtype_name(ab) + " into " + dtype_name(c_type) +
                     " (expected f32, bf16 or f16 operands into f32 or their own type)");
  }
  if (m == 0 || n == 0) return;
  // From the caller's pool (Exec::scratch): a heap block of megabytes per call would be mapped
  // and faulted in every time.
  std::optional<FloatScratch> wa, wb, wc;
  const index_t rows_a = trans_a == Transpose::kNo ? m : k, cols_a = trans_a == Transpose::kNo ? k : m;
  const index_t rows_b = trans_b == Transpose::kNo ? k : n, cols_b = trans_b == Transpose::kNo ? n : k;
  const float* fa = widened(wa, a, ab, span(rows_a, cols_a, lda), exec);
  const float* fb = widened(wb, b, ab, span(rows_b, cols_b, ldb), exec);
  if (c_type == DType::kF32) {
    gemm(trans_a, trans_b, m, n, k, alpha, fa, lda, fb, ldb, beta, static_cast<float*>(c), ldc, exec);
    return;
  }
  // A low-precision C: FP32 result (C widened first when beta reads it), one rounding back.
  const index_t count = span(m, n, ldc);
  float* fc = nullptr;
  if (beta != 0.0f) {
    fc = const_cast<float*>(widened(wc, c, c_type, count, exec));
  } else {
    wc.emplace(exec, count);
    fc = wc->data();
  }
  gemm(trans_a, trans_b, m, n, k, alpha, fa, lda, fb, ldb, beta, fc, ldc, exec);
  if (ldc == n) {
    cast(c, c_type, fc, DType::kF32, count, exec);
    return;
  }
  // Rows only: the gaps between them belong to someone else.
  auto* out = static_cast<unsigned char*>(c);
  for (index_t i = 0; i < m; ++i) {
    cast(out + static_cast<std::size_t>(i * ldc) * dtype_size(c_type), c_type, fc + i * ldc, DType::kF32, n, exec);
  }
}

void linear_forward(index_t rows, index_t in, index_t out, const float* x, const float* w, const float* bias, float* y,
                    bool /*tf32*/, const Exec& exec) {
  gemm(Transpose::kNo, Transpose::kYes, rows, out, in, 1.0f, x, in, w, in, 0.0f, y, out, exec);
  add_row_vector(y, DType::kF32, bias, rows, out, exec);
}

}  // namespace gpudl::kernels::cpu
