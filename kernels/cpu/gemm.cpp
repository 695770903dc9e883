// CPU GEMM through OpenBLAS's CBLAS interface (row-major).
#include "gpudl/kernels/gemm.h"

#include <cblas.h>

#include <limits>

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
  cblas_sgemm(CblasRowMajor, to_cblas(trans_a), to_cblas(trans_b), to_blasint(m, "m"), to_blasint(n, "n"),
              to_blasint(k, "k"), alpha, a, to_blasint(lda, "lda"), b, to_blasint(ldb, "ldb"), beta, c,
              to_blasint(ldc, "ldc"));
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
