// Per-device execution context: streams, memory pools, cuBLAS/cuDNN handles, workspace.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>

#include "gpudl/core/runtime/device.h"
#include "gpudl/core/runtime/memory_pool.h"
#include "gpudl/core/runtime/stream.h"
#include "gpudl/kernels/common.h"

namespace gpudl {

// Deterministic mode, off by default (GPUDL_DETERMINISTIC=1 turns it on at start-up): CUDA
// kernels sum in a fixed order instead of with float atomics, and convolutions use cuDNN's
// deterministic algorithms, so two runs with the same seeds give bit-identical results on the
// same GPU. Slower: loss sums, gradient norms and embedding gradients run on one block.
void set_deterministic(bool on);
bool deterministic();

// One per device, created on first use and kept for the life of the process. All tensor
// work on a device is ordered on its compute stream; the copy stream carries prefetches.
// One process may use several devices: nothing here assumes the calling thread's current
// device is this context's, and only exec()/copy_exec() change it.
// Thread-safe creation; use from several threads needs external ordering of the streams.
class Context {
 public:
  // The context of `device`; after the first call for a device, a lock-free lookup. Throws
  // DeviceError for a CUDA device that cannot be used.
  static Context& get(Device device);

  Device device() const { return device_; }
  const Stream& compute_stream() const { return compute_; }
  const Stream& copy_stream() const { return copy_; }

  // Device memory (host memory for the CPU context).
  MemoryPool& memory_pool() const { return *pool_; }
  std::shared_ptr<MemoryPool> memory_pool_ptr() const { return pool_; }
  // Page-locked host memory for asynchronous copies; shared by all CUDA contexts.
  // Throws DeviceError in a CPU-only build.
  static std::shared_ptr<MemoryPool> pinned_pool();

  // cuBLAS/cuDNN handles bound to the compute stream, created on first use (nullptr on the
  // CPU). Throws CudaError if creation fails.
  void* cublas();
  void* cudnn();

  // Launch context for kernels on the compute stream; with_blas adds the cuBLAS handle,
  // with_dnn the cuDNN handle. On CUDA it also lends the device pool as scratch memory
  // (kernels::Exec::scratch), which convolutions time their algorithm candidates with.
  // Kernels launch on the calling thread's current device, so on CUDA this makes the context's
  // device current and leaves it so; a caller that must not move the thread's current device
  // holds a cuda_api::DeviceGuard for it around exec() and the launches, as the dispatch in
  // core/detail/backend.h does. Throws CudaError if the device cannot be made current.
  kernels::Exec exec(bool with_blas = false, bool with_dnn = false);
  // Launch context on the copy stream (for work that travels with a prefetch, such as
  // augmentation of the next batch); makes the device current as exec() does.
  kernels::Exec copy_exec();
  // The device pool as kernels see it (nullptr on the CPU): what exec() puts in Exec::scratch.
  kernels::ScratchAllocator* scratch_allocator() { return scratch_.get(); }

  // Scratch memory of at least `bytes`, valid for work enqueued on the compute stream until
  // the next call (the buffer only grows). Throws OutOfMemoryError.
  void* workspace(std::size_t bytes);

  // Blocks until all work on both streams has finished.
  void synchronize() const;

  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

 private:
  explicit Context(Device device);

  Device device_;
  Stream compute_;
  Stream copy_;
  std::shared_ptr<MemoryPool> pool_;
  std::unique_ptr<kernels::ScratchAllocator> scratch_;
  std::once_flag cublas_once_;
  std::once_flag cudnn_once_;
  void* cublas_ = nullptr;
  void* cudnn_ = nullptr;
  std::mutex workspace_mutex_;
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
};

}  // namespace gpudl
