// CUDA GEMM through cuBLAS (row-major on top of column-major); twin of kernels/cpu/gemm.cpp.
#include <cublas_v2.h>

#include <algorithm>
#include <limits>
#include <string>

#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/gemm.h"

namespace gpudl::kernels::cuda {
namespace {

cublasOperation_t to_cublas(Transpose t) { return t == Transpose::kYes ? CUBLAS_OP_T : CUBLAS_OP_N; }

int to_int(index_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max()) {
    throw ValueError(std::string("gemm: ") + what + " = " + std::to_string(v) + " is out of cuBLAS's int range");
  }
  return static_cast<int>(v);
}

cublasHandle_t handle_for(const Exec& exec) {
  if (exec.blas == nullptr) throw ValueError("gemm: the CUDA Exec carries no cuBLAS handle");
  auto handle = static_cast<cublasHandle_t>(exec.blas);
  // The handle may have last served another stream; binding is cheap and keeps the order right.
  GPUDL_CHECK_CUDA(cublasSetStream(handle, detail::stream_of(exec)));
  return handle;
}

cudaDataType_t to_cuda_type(DType t) {
  switch (t) {
    case DType::kF32: return CUDA_R_32F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF16: return CUDA_R_16F;
    default: break;
  }
  throw ValueError(std::string("gemm_ex: dtype ") + dtype_name(t) + " is not f32, bf16 or f16");
}

}  // namespace

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same buffers with the
// operands swapped, so no data moves.
void gemm(Transpose trans_a, Transpose trans_b, index_t m, index_t n, index_t k, float alpha, const float* a,
          index_t lda, const float* b, index_t ldb, float beta, float* c, index_t ldc, const Exec& exec) {
  if (m == 0 || n == 0) return;
  cublasHandle_t handle = handle_for(exec);
  GPUDL_CHECK_CUDA(cublasSgemm(handle, to_cublas(trans_b), to_cublas(trans_a), to_int(n, "n"), to_int(m, "m"),
                               to_int(k, "k"), &alpha, b, to_int(ldb, "ldb"), a, to_int(lda, "lda"), &beta, c,
                               to_int(ldc, "ldc")));
}

void gemm_strided_batched(Transpose trans_a, Transpose trans_b, index_t m, index_t n, index_t k, float alpha,
                          const float* a, index_t lda, index_t stride_a, const float* b, index_t ldb,
                          index_t stride_b, float beta, float* c, index_t ldc, index_t stride_c, index_t batch,
                          const Exec& exec) {
  if (m == 0 || n == 0 || batch == 0) return;
  if (batch < 0) throw ValueError("gemm: batch = " + std::to_string(batch) + " is negative");
  cublasHandle_t handle = handle_for(exec);
  // cuBLAS takes at most kMaxGemmBatch products per call (kernels/common.h); the slices are
  // independent, so splitting changes no result.
  for (index_t first = 0; first < batch; first += kMaxGemmBatch) {
    const index_t count = std::min(kMaxGemmBatch, batch - first);
    GPUDL_CHECK_CUDA(cublasSgemmStridedBatched(handle, to_cublas(trans_b), to_cublas(trans_a), to_int(n, "n"),
                                               to_int(m, "m"), to_int(k, "k"), &alpha, b + first * stride_b,
                                               to_int(ldb, "ldb"), stride_b, a + first * stride_a, to_int(lda, "lda"),
                                               stride_a, &beta, c + first * stride_c, to_int(ldc, "ldc"), stride_c,
                                               to_int(count, "batch")));
  }
}

// bf16/fp16 operands go to the tensor cores with FP32 accumulation (CUBLAS_COMPUTE_32F keeps
// the sums in FP32; the operand types choose the tensor-core path). FP32 operands stay FP32
// math unless tf32 asks for the fast TF32 compute type, per call, so no handle state leaks.
void gemm_ex(Transpose trans_a, Transpose trans_b, index_t m, index_t n, index_t k, float alpha, DType ab,
             const void* a, index_t lda, const void* b, index_t ldb, float beta, DType c_type, void* c, index_t ldc,
             bool tf32, const Exec& exec) {
  if (!(c_type == DType::kF32 || c_type == ab)) {
    throw ValueError(std::string("gemm_ex: operands of dtype ") + dtype_name(ab) + " into " + dtype_name(c_type) +
                     " (expected f32, bf16 or f16 operands into f32 or their own type)");
  }
  const cudaDataType_t in_type = to_cuda_type(ab), out_type = to_cuda_type(c_type);
  if (m == 0 || n == 0) return;
  cublasHandle_t handle = handle_for(exec);
  const cublasComputeType_t compute =
      ab == DType::kF32 && tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  GPUDL_CHECK_CUDA(cublasGemmEx(handle, to_cublas(trans_b), to_cublas(trans_a), to_int(n, "n"), to_int(m, "m"),
                                to_int(k, "k"), &alpha, b, in_type, to_int(ldb, "ldb"), a, in_type,
                                to_int(lda, "lda"), &beta, c, out_type, to_int(ldc, "ldc"), compute,
                                CUBLAS_GEMM_DEFAULT));
}

}  // namespace gpudl::kernels::cuda
