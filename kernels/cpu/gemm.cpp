// CPU GEMM through OpenBLAS's CBLAS interface (row-major), large products split over threads.
#include "gpudl/kernels/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <limits>

#include "gpudl/kernels/cpu/parallel.h"
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

}  // namespace gpudl::kernels::cpu
