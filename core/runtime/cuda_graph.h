// CudaGraph: the work one callable enqueues on a device's compute stream, captured once and
// replayed with one launch, its memory held in a graph-private pool so replays allocate nothing.
#pragma once

#include <functional>
#include <memory>

#include "gpudl/core/runtime/device.h"
#include "gpudl/core/runtime/memory_pool.h"

namespace gpudl {

// A replay repeats the captured kernels on the captured addresses with the captured kernel
// arguments: tensors made during the capture are the graph's (their memory comes from its
// private pool and stays reserved while the graph lives), and a value the host passed as a
// kernel argument (a learning rate, a random offset) is frozen at its captured value. Code that
// needs a value to change between replays keeps it in device memory.
class CudaGraph {
 public:
  // Captures body() on `device`'s compute stream. Throws DeviceError for a device that is not
  // CUDA; when body() throws or does something a capture cannot hold (a synchronisation, a
  // read back to the host), the capture is ended, its pool released, and the error (CudaError
  // for the latter) passed on, so the stream stays usable for eager work.
  CudaGraph(Device device, const std::function<void()>& body);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Enqueues the captured work on the compute stream. Throws CudaError if the launch fails.
  void replay();
  Device device() const { return device_; }

  // Whether `device`'s compute stream is being captured right now (false on the CPU): code that
  // would bake a host value into the graph checks this and refuses, so a capture fails rather
  // than replays wrongly.
  static bool capturing(Device device);

 private:
  Device device_;
  void* exec_ = nullptr;  // cudaGraphExec_t
  std::shared_ptr<MemoryPool> pool_;
  MemoryPool::PrivateId pool_id_ = 0;
};

}  // namespace gpudl
