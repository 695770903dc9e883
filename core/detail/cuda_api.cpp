// CUDA runtime, cuBLAS and cuDNN wrappers for core/ (stubs that throw in a CPU-only build).
#include "gpudl/core/detail/cuda_api.h"

#include "gpudl/config.h"
#include "gpudl/kernels/error.h"

#if GPUDL_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <cstdio>

#include "gpudl/kernels/cuda/check.h"
#endif

namespace gpudl::cuda_api {

#if GPUDL_WITH_CUDA

namespace {
cudaStream_t as_stream(StreamHandle s) { return static_cast<cudaStream_t>(s); }
cudaEvent_t as_event(EventHandle e) { return static_cast<cudaEvent_t>(e); }

// Destructors and free paths must not throw; a failure there is reported, not hidden. At
// process exit the runtime may already be unloaded, which is not worth a warning.
void warn_if_failed(cudaError_t status, const char* what) noexcept {
  if (status != cudaSuccess && status != cudaErrorCudartUnloading) {
    std::fprintf(stderr, "gpudl: warning: %s failed: %s\n", what, cudaGetErrorString(status));
  }
}
}  // namespace

bool built_with_cuda() { return true; }

int device_count(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (reason != nullptr) *reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  if (count == 0 && reason != nullptr) *reason = "no CUDA device found";
  return count;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  GPUDL_CHECK_CUDA(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

int compute_capability(int device) {
  int major = 0, minor = 0;
  GPUDL_CHECK_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  GPUDL_CHECK_CUDA(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor;
}

std::size_t total_memory(int device) {
  cudaDeviceProp prop{};
  GPUDL_CHECK_CUDA(cudaGetDeviceProperties(&prop, device));
  return prop.totalGlobalMem;
}

void set_device(int device) { GPUDL_CHECK_CUDA(cudaSetDevice(device)); }

int current_device() {
  int device = 0;
  GPUDL_CHECK_CUDA(cudaGetDevice(&device));
  return device;
}

DeviceGuard::DeviceGuard(int device) {
  if (device < 0) return;
  int current = 0;
  GPUDL_CHECK_CUDA(cudaGetDevice(&current));
  if (current == device) return;
  GPUDL_CHECK_CUDA(cudaSetDevice(device));
  previous_ = current;
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) warn_if_failed(cudaSetDevice(previous_), "cudaSetDevice (restoring the current device)");
}

int stream_device(void* stream) {
  int device = 0;
  GPUDL_CHECK_CUDA(cudaStreamGetDevice(as_stream(stream), &device));
  return device;
}

void* malloc_device(std::size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky; clear it so the retry and later checks start clean
    return nullptr;
  }
  GPUDL_CHECK_CUDA(status);
  return ptr;
}

void free_device(void* ptr) noexcept { warn_if_failed(cudaFree(ptr), "cudaFree"); }

void* malloc_pinned(std::size_t bytes) {
  void* ptr = nullptr;
  const cudaError_t status = cudaMallocHost(&ptr, bytes);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  GPUDL_CHECK_CUDA(status);
  return ptr;
}

void free_pinned(void* ptr) noexcept { warn_if_failed(cudaFreeHost(ptr), "cudaFreeHost"); }

StreamHandle stream_create() {
  cudaStream_t s = nullptr;
  GPUDL_CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void stream_destroy(StreamHandle s) noexcept { warn_if_failed(cudaStreamDestroy(as_stream(s)), "cudaStreamDestroy"); }
void stream_synchronize(StreamHandle s) { GPUDL_CHECK_CUDA(cudaStreamSynchronize(as_stream(s))); }
void stream_wait_event(StreamHandle s, EventHandle e) {
  GPUDL_CHECK_CUDA(cudaStreamWaitEvent(as_stream(s), as_event(e), 0));
}

void stream_begin_capture(StreamHandle s) {
  GPUDL_CHECK_CUDA(cudaStreamBeginCapture(as_stream(s), cudaStreamCaptureModeRelaxed));
}

GraphHandle stream_end_capture(StreamHandle s) {
  cudaGraph_t graph = nullptr;
  GPUDL_CHECK_CUDA(cudaStreamEndCapture(as_stream(s), &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);  // the executable graph keeps what it needs
  GPUDL_CHECK_CUDA(status);
  return exec;
}

bool stream_is_capturing(StreamHandle s) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  GPUDL_CHECK_CUDA(cudaStreamIsCapturing(as_stream(s), &status));
  return status != cudaStreamCaptureStatusNone;
}

void graph_launch(GraphHandle g, StreamHandle s) {
  GPUDL_CHECK_CUDA(cudaGraphLaunch(static_cast<cudaGraphExec_t>(g), as_stream(s)));
}

void graph_destroy(GraphHandle g) noexcept {
  if (g != nullptr) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(g));
}

void clear_last_error() noexcept { cudaGetLastError(); }

void stream_wait_stream(StreamHandle waiter, StreamHandle producer) {
  if (waiter == nullptr || producer == nullptr || waiter == producer) return;
  EventHandle e = event_record_on(producer);
  // Destroying the event at once is fine: the wait has already captured the recorded work.
  struct Release {
    EventHandle event;
    ~Release() { event_destroy(event); }
  } release{e};
  GPUDL_CHECK_CUDA(cudaStreamWaitEvent(as_stream(waiter), as_event(e), 0));
}

EventHandle event_record_on(StreamHandle s) {
  // An event is created on the current device and can be recorded only on a stream of that
  // device, which need not be the current one.
  const DeviceGuard guard(stream_device(s));
  cudaEvent_t e = nullptr;
  GPUDL_CHECK_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  const cudaError_t status = cudaEventRecord(e, as_stream(s));
  if (status != cudaSuccess) warn_if_failed(cudaEventDestroy(e), "cudaEventDestroy");
  GPUDL_CHECK_CUDA(status);
  return e;
}

EventHandle event_create(bool timing) {
  cudaEvent_t e = nullptr;
  GPUDL_CHECK_CUDA(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  return e;
}

void event_destroy(EventHandle e) noexcept { warn_if_failed(cudaEventDestroy(as_event(e)), "cudaEventDestroy"); }
void event_record(EventHandle e, StreamHandle s) { GPUDL_CHECK_CUDA(cudaEventRecord(as_event(e), as_stream(s))); }

bool event_query(EventHandle e) {
  const cudaError_t status = cudaEventQuery(as_event(e));
  if (status == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  GPUDL_CHECK_CUDA(status);
  return true;
}

void event_synchronize(EventHandle e) { GPUDL_CHECK_CUDA(cudaEventSynchronize(as_event(e))); }

float event_elapsed_ms(EventHandle start, EventHandle stop) {
  float ms = 0.0f;
  GPUDL_CHECK_CUDA(cudaEventElapsedTime(&ms, as_event(start), as_event(stop)));
  return ms;
}

void memcpy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind, StreamHandle s) {
  if (bytes == 0) return;
  cudaMemcpyKind k = cudaMemcpyDefault;
  switch (kind) {
    case CopyKind::kHostToDevice: k = cudaMemcpyHostToDevice; break;
    case CopyKind::kDeviceToHost: k = cudaMemcpyDeviceToHost; break;
    case CopyKind::kDeviceToDevice: k = cudaMemcpyDeviceToDevice; break;
    case CopyKind::kHostToHost: k = cudaMemcpyHostToHost; break;
  }
  GPUDL_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, k, as_stream(s)));
}

void memcpy_peer_async(void* dst, int dst_device, const void* src, int src_device, std::size_t bytes,
                       StreamHandle s) {
  if (bytes == 0) return;
  GPUDL_CHECK_CUDA(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes, as_stream(s)));
}

void device_synchronize() { GPUDL_CHECK_CUDA(cudaDeviceSynchronize()); }

void* cublas_create(StreamHandle s) {
  cublasHandle_t h = nullptr;
  GPUDL_CHECK_CUDA(cublasCreate(&h));
  GPUDL_CHECK_CUDA(cublasSetStream(h, as_stream(s)));
  return h;
}

void cublas_destroy(void* handle) noexcept { cublasDestroy(static_cast<cublasHandle_t>(handle)); }

void* cudnn_create(StreamHandle s) {
  cudnnHandle_t h = nullptr;
  GPUDL_CHECK_CUDA(cudnnCreate(&h));
  GPUDL_CHECK_CUDA(cudnnSetStream(h, as_stream(s)));
  return h;
}

void cudnn_destroy(void* handle) noexcept { cudnnDestroy(static_cast<cudnnHandle_t>(handle)); }

std::string versions() {
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  auto ver = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
  const std::size_t cudnn = cudnnGetVersion();
  int cublas_major = 0, cublas_minor = 0, cublas_patch = 0;
  cublasGetProperty(MAJOR_VERSION, &cublas_major);
  cublasGetProperty(MINOR_VERSION, &cublas_minor);
  cublasGetProperty(PATCH_LEVEL, &cublas_patch);
  return "CUDA runtime " + ver(runtime) + ", driver " + (driver == 0 ? std::string("none") : ver(driver)) +
         ", cuBLAS " + std::to_string(cublas_major) + "." + std::to_string(cublas_minor) + "." +
         std::to_string(cublas_patch) + ", cuDNN " + std::to_string(cudnn / 10000) + "." +
         std::to_string((cudnn % 10000) / 100) + "." + std::to_string(cudnn % 100);
}

#else  // CPU-only build

namespace {
[[noreturn]] void no_cuda() {
  throw DeviceError("libgpudl was built without CUDA (the `cpu` preset); rebuild with the `cuda` preset");
}
}  // namespace

bool built_with_cuda() { return false; }
int device_count(std::string* reason) {
  if (reason != nullptr) *reason = "libgpudl was built without CUDA (the `cpu` preset)";
  return 0;
}
std::string device_name(int) { no_cuda(); }
int compute_capability(int) { no_cuda(); }
std::size_t total_memory(int) { no_cuda(); }
void set_device(int) { no_cuda(); }
int current_device() { no_cuda(); }
DeviceGuard::DeviceGuard(int device) {
  if (device >= 0) no_cuda();
}
DeviceGuard::~DeviceGuard() = default;
int stream_device(void*) { no_cuda(); }
void* malloc_device(std::size_t) { no_cuda(); }
void free_device(void*) noexcept {}
void* malloc_pinned(std::size_t) { no_cuda(); }
void free_pinned(void*) noexcept {}
StreamHandle stream_create() { no_cuda(); }
void stream_destroy(StreamHandle) noexcept {}
void stream_synchronize(StreamHandle) { no_cuda(); }
void stream_wait_event(StreamHandle, EventHandle) { no_cuda(); }
void stream_begin_capture(StreamHandle) { no_cuda(); }
GraphHandle stream_end_capture(StreamHandle) { no_cuda(); }
bool stream_is_capturing(StreamHandle) { return false; }
void graph_launch(GraphHandle, StreamHandle) { no_cuda(); }
void graph_destroy(GraphHandle) noexcept {}
void clear_last_error() noexcept {}
void stream_wait_stream(StreamHandle waiter, StreamHandle producer) {
  if (waiter != nullptr && producer != nullptr && waiter != producer) no_cuda();
}
EventHandle event_create(bool) { no_cuda(); }
EventHandle event_record_on(StreamHandle) { no_cuda(); }
void event_destroy(EventHandle) noexcept {}
void event_record(EventHandle, StreamHandle) { no_cuda(); }
bool event_query(EventHandle) { no_cuda(); }
void event_synchronize(EventHandle) { no_cuda(); }
float event_elapsed_ms(EventHandle, EventHandle) { no_cuda(); }
void memcpy_async(void*, const void*, std::size_t, CopyKind, StreamHandle) { no_cuda(); }
void memcpy_peer_async(void*, int, const void*, int, std::size_t, StreamHandle) { no_cuda(); }
void device_synchronize() { no_cuda(); }
void* cublas_create(StreamHandle) { no_cuda(); }
void cublas_destroy(void*) noexcept {}
void* cudnn_create(StreamHandle) { no_cuda(); }
void cudnn_destroy(void*) noexcept {}
std::string versions() { return "no CUDA (cpu build)"; }

#endif

}  // namespace gpudl::cuda_api
