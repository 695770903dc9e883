// Types shared by every kernel family: index type, launch context, host/device markers.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define GPUDL_HD __host__ __device__
#else
#define GPUDL_HD
#endif

namespace gpudl::kernels {

using index_t = std::int64_t;

// Where a kernel runs. Opaque pointers keep these headers free of CUDA includes, so the
// same declarations serve g++ and nvcc; the CPU backend ignores both and runs at once.
struct Exec {
  void* stream = nullptr;  // cudaStream_t the work is ordered on
  void* blas = nullptr;    // cublasHandle_t (GEMM only); kernels bind it to `stream` before use
  void* dnn = nullptr;     // cudnnHandle_t (convolutions only); likewise bound before use
  // Sums in a fixed order (no float atomics across blocks) so that runs repeat bit for bit;
  // set from gpudl::deterministic(). The CPU backend's order is fixed regardless.
  bool deterministic = false;
};

enum class Transpose : std::uint8_t { kNo, kYes };

}  // namespace gpudl::kernels
