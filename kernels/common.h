// Types shared by every kernel family: index type, launch context, host/device markers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gpudl/config.h"

#if defined(__CUDACC__)
#define GPUDL_HD __host__ __device__
#else
#define GPUDL_HD
#endif

namespace gpudl::kernels {

using index_t = std::int64_t;

// Strided-batched GEMMs go to cuBLAS in slices of at most this many products: a CUDA grid's y
// and z extents stop at 65535, and some cuBLAS releases put the batch there, so a larger count
// fails at launch. Every batched GEMM (gemm.cu, the 1x1 convolutions in conv.cu) splits by it.
inline constexpr index_t kMaxGemmBatch = 65535;

// Device memory that a kernel needs for a moment beyond the workspace its caller sized (cuDNN's
// timed algorithm search needs scratch tensors and a workspace for every candidate). Core's
// Context lends its caching pool through this, so the kernels layer never allocates on its own.
class ScratchAllocator {
 public:
  // At least `bytes` bytes usable by work on `stream` (a cudaStream_t; nullptr on the CPU);
  // nullptr for 0 bytes.
  // Throws OutOfMemoryError when the device has no room even after the pool released its cache.
  virtual void* allocate(std::size_t bytes, void* stream) = 0;
  // Returns memory from allocate(); work already enqueued on its stream may still use it.
  virtual void deallocate(void* ptr) noexcept = 0;
  // Gives cached but unused memory back to the device, so that a library allocating on its own
  // (cuDNN inside a search) finds room. Never throws.
  virtual void release_cached() noexcept = 0;

  virtual ~ScratchAllocator() = default;
};

// Where a kernel runs. Opaque pointers keep these headers free of CUDA includes, so the
// same declarations serve g++ and nvcc; the CPU backend ignores all of them and runs at once.
struct Exec {
  void* stream = nullptr;  // cudaStream_t the work is ordered on
  void* blas = nullptr;    // cublasHandle_t (GEMM only); kernels bind it to `stream` before use
  void* dnn = nullptr;     // cudnnHandle_t (convolutions only); likewise bound before use
  // Sums in a fixed order (no float atomics across blocks) so that runs repeat bit for bit;
  // set from gpudl::deterministic(). The CPU backend's order is fixed regardless.
  bool deterministic = false;
  // Scratch memory for the moment (Context fills in its pool). Without it, convolutions rank
  // cuDNN's algorithms by its heuristics instead of timing them, since timing needs buffers.
  ScratchAllocator* scratch = nullptr;
};

// Each kernel family declares its functions twice, in cpu:: and in cuda:: (with identical
// signatures), and the facade in core/ picks one from the tensors' device at run time. A build
// without CUDA has no cuda:: definitions; naming cpu:: as cuda:: there keeps the facade's calls
// one expression for both builds, and it throws DeviceError before a CUDA device reaches them.
#if !GPUDL_WITH_CUDA
namespace cpu {}
namespace cuda = cpu;
#endif

enum class Transpose : std::uint8_t { kNo, kYes };

}  // namespace gpudl::kernels
