// CudaGraph: capture on the compute stream into a graph-private pool, replay with one launch.
#include "gpudl/core/runtime/cuda_graph.h"

#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/core/runtime/context.h"
#include "gpudl/core/runtime/error.h"

namespace gpudl {

namespace {

// Ends a capture that is being abandoned; its own failure adds nothing to the error at hand,
// and the call that broke the capture must not be reported again by the next launch check.
void abandon_capture(void* stream) noexcept {
  try {
    if (cuda_api::stream_is_capturing(stream)) cuda_api::graph_destroy(cuda_api::stream_end_capture(stream));
  } catch (...) {
  }
  cuda_api::clear_last_error();
}

}  // namespace

CudaGraph::CudaGraph(Device device, const std::function<void()>& body) : device_(device) {
  if (!device.is_cuda()) {
    throw DeviceError("CudaGraph: " + device.str() + " has no CUDA graphs; capture needs a CUDA device");
  }
  Context& context = Context::get(device);
  pool_ = context.memory_pool_ptr();
  void* stream = context.compute_stream().handle();
  const cuda_api::DeviceGuard guard(device.index());
  pool_id_ = pool_->create_private();
  pool_->begin_private(pool_id_, stream);
  try {
    cuda_api::stream_begin_capture(stream);
    try {
      body();
    } catch (...) {
      abandon_capture(stream);
      throw;
    }
    exec_ = cuda_api::stream_end_capture(stream);
  } catch (...) {
    cuda_api::clear_last_error();
    pool_->end_private(stream);
    pool_->release_private(pool_id_);
    throw;
  }
  pool_->end_private(stream);
}

CudaGraph::~CudaGraph() {
  cuda_api::graph_destroy(exec_);
  // Only once the graph is gone may its memory serve anyone else.
  pool_->release_private(pool_id_);
}

bool CudaGraph::capturing(Device device) {
  if (!device.is_cuda()) return false;
  const cuda_api::DeviceGuard guard(device.index());
  return cuda_api::stream_is_capturing(Context::get(device).compute_stream().handle());
}

void CudaGraph::replay() {
  Context& context = Context::get(device_);
  const cuda_api::DeviceGuard guard(device_.index());
  cuda_api::graph_launch(exec_, context.compute_stream().handle());
}

}  // namespace gpudl
