// CUDA GEMM through cuBLAS (row-major on top of column-major), and the Linear forward through
// cuBLASLt with its bias epilogue; twin of kernels/cpu/gemm.cpp.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/elementwise.h"
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

namespace {

// cuBLASLt's workspace for the Linear forward: what PyTorch lends it too, ample for these shapes.
constexpr std::size_t kLtWorkspace = std::size_t{4} << 20;

// One Linear shape's cuBLASLt descriptors and the algorithm its heuristic picked (none: `found`
// false, and the shape runs as gemm plus a bias pass).
struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t w = nullptr, x = nullptr, y = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::size_t workspace = 0;
  bool found = false;
  std::mutex use;  // the bias pointer is an attribute of `op`: set and launch under this lock

  ~LtPlan() {
    for (cublasLtMatrixLayout_t l : {w, x, y}) {
      if (l != nullptr) cublasLtMatrixLayoutDestroy(l);
    }
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

using LtKey = std::tuple<void*, index_t, index_t, index_t, bool, bool>;

LtPlan& lt_plan(cublasLtHandle_t lt, index_t rows, index_t in, index_t out, bool tf32, bool workspace) {
  static std::mutex mutex;
  static auto* plans = new std::map<LtKey, std::unique_ptr<LtPlan>>();  // outlives static destruction
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = (*plans)[LtKey{lt, rows, in, out, tf32, workspace}];
  if (slot) return *slot;
  auto plan = std::make_unique<LtPlan>();
  GPUDL_CHECK_CUDA(cublasLtMatmulDescCreate(&plan->op, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                                            CUDA_R_32F));
  // The row-major buffers seen column-major: y is (out x rows), w is (in x out) and taken
  // transposed, x is (in x rows); the bias, one value per output unit, goes down each column.
  const cublasOperation_t transpose = CUBLAS_OP_T, plain = CUBLAS_OP_N;
  const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
  GPUDL_CHECK_CUDA(
      cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
  GPUDL_CHECK_CUDA(cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &plain, sizeof(plain)));
  GPUDL_CHECK_CUDA(
      cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  const auto i64 = [](index_t v) { return static_cast<std::uint64_t>(v); };
  GPUDL_CHECK_CUDA(cublasLtMatrixLayoutCreate(&plan->w, CUDA_R_32F, i64(in), i64(out), static_cast<std::int64_t>(in)));
  GPUDL_CHECK_CUDA(cublasLtMatrixLayoutCreate(&plan->x, CUDA_R_32F, i64(in), i64(rows), static_cast<std::int64_t>(in)));
  GPUDL_CHECK_CUDA(
      cublasLtMatrixLayoutCreate(&plan->y, CUDA_R_32F, i64(out), i64(rows), static_cast<std::int64_t>(out)));
  cublasLtMatmulPreference_t preference = nullptr;
  GPUDL_CHECK_CUDA(cublasLtMatmulPreferenceCreate(&preference));
  const std::size_t limit = workspace ? kLtWorkspace : 0;
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t status = [&] {
    const cublasStatus_t set = cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &limit, sizeof(limit));
    if (set != CUBLAS_STATUS_SUCCESS) return set;
    return cublasLtMatmulAlgoGetHeuristic(lt, plan->op, plan->w, plan->x, plan->y, plan->y, preference, 1, &result,
                                          &returned);
  }();
  cublasLtMatmulPreferenceDestroy(preference);
  // No algorithm for the shape is not an error: the gemm and bias pass serve it.
  if (status == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    plan->algo = result.algo;
    plan->workspace = result.workspaceSize;
    plan->found = true;
  } else if (status != CUBLAS_STATUS_SUCCESS && status != CUBLAS_STATUS_NOT_SUPPORTED) {
    GPUDL_CHECK_CUDA(status);
  }
  slot = std::move(plan);
  return *slot;
}

}  // namespace

void linear_forward(index_t rows, index_t in, index_t out, const float* x, const float* w, const float* bias, float* y,
                    bool tf32, const Exec& exec) {
  if (rows == 0 || out == 0) return;
  to_int(rows, "rows");
  to_int(in, "in");
  to_int(out, "out");
  const cublasHandle_t handle = handle_for(exec);
  // A cuBLAS handle serves as a cuBLASLt one (cuBLAS's documentation allows the cast).
  const auto lt = reinterpret_cast<cublasLtHandle_t>(handle);
  LtPlan& plan = lt_plan(lt, rows, in, out, tf32, exec.scratch != nullptr);
  if (!plan.found || in == 0) {
    if (tf32) {
      gemm_ex(Transpose::kNo, Transpose::kYes, rows, out, in, 1.0f, DType::kF32, x, in, w, in, 0.0f, DType::kF32, y,
              out, true, exec);
    } else {
      gemm(Transpose::kNo, Transpose::kYes, rows, out, in, 1.0f, x, in, w, in, 0.0f, y, out, exec);
    }
    add_row_vector(y, DType::kF32, bias, rows, out, exec);
    return;
  }
  void* workspace = nullptr;
  if (plan.workspace > 0) workspace = exec.scratch->allocate(plan.workspace, exec.stream);
  const float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  {
    std::lock_guard<std::mutex> lock(plan.use);
    status = cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = cublasLtMatmul(lt, plan.op, &alpha, w, plan.w, x, plan.x, &beta, y, plan.y, y, plan.y, &plan.algo,
                              workspace, plan.workspace, detail::stream_of(exec));
    }
  }
  if (workspace != nullptr) exec.scratch->deallocate(workspace);
  GPUDL_CHECK_CUDA(status);
}

}  // namespace gpudl::kernels::cuda
