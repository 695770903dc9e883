// Status checks for CUDA runtime, cuBLAS and cuDNN calls: each failure throws gpudl::CudaError.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <string>

#include "gpudl/kernels/error.h"

namespace gpudl::kernels::detail {

inline std::string status_text(cudaError_t s) {
  return std::string(cudaGetErrorName(s)) + " (" + cudaGetErrorString(s) + ")";
}
inline std::string status_text(cublasStatus_t s) {
  return std::string(cublasGetStatusName(s)) + " (" + cublasGetStatusString(s) + ")";
}
inline std::string status_text(cudnnStatus_t s) { return cudnnGetErrorString(s); }

inline bool ok(cudaError_t s) { return s == cudaSuccess; }
inline bool ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
inline bool ok(cudnnStatus_t s) { return s == CUDNN_STATUS_SUCCESS; }

inline const char* api_name(cudaError_t) { return "CUDA"; }
inline const char* api_name(cublasStatus_t) { return "cuBLAS"; }
inline const char* api_name(cudnnStatus_t) { return "cuDNN"; }

}  // namespace gpudl::kernels::detail

// Evaluates a CUDA runtime, cuBLAS or cuDNN call once and throws CudaError naming the call,
// its status and file:line unless it succeeded.
#define GPUDL_CHECK_CUDA(call)                                                                           \
  do {                                                                                                   \
    const auto gpudl_status_ = (call);                                                                   \
    if (!::gpudl::kernels::detail::ok(gpudl_status_)) {                                                  \
      ::gpudl::detail::throw_api_error(::gpudl::kernels::detail::api_name(gpudl_status_), #call,          \
                                       ::gpudl::kernels::detail::status_text(gpudl_status_), __FILE__,    \
                                       __LINE__);                                                        \
    }                                                                                                    \
  } while (0)

// After a kernel launch: reports a bad launch configuration at the launch site.
#define GPUDL_CHECK_LAUNCH() GPUDL_CHECK_CUDA(cudaGetLastError())
