// Thin, checked wrappers over the CUDA runtime, cuBLAS and cuDNN for the rest of core/.
//
// Only cuda_api.cpp includes CUDA headers. In a CPU-only build every function that needs a
// GPU throws DeviceError, and device_count() is 0, so callers need no #ifdef.
#pragma once

#include <cstddef>
#include <string>

namespace gpudl::cuda_api {

// Whether the CUDA backend was compiled in.
bool built_with_cuda();

// Usable devices; 0 (never an exception) without a driver or GPU. `reason` gets why not.
int device_count(std::string* reason = nullptr);
std::string device_name(int device);
// Compute capability as major * 10 + minor, total memory in bytes.
int compute_capability(int device);
std::size_t total_memory(int device);

void set_device(int device);
int current_device();

// Makes `device` current for the calling thread until the guard dies, then restores the device
// that was current before, so code driving one GPU never moves another thread-visible choice.
// Costs one cudaGetDevice when `device` is already current. A negative `device` (the CPU) does
// nothing and touches no CUDA state. The constructor throws CudaError if the device cannot be
// made current (DeviceError in a CPU-only build); the destructor only warns.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;  // -1: nothing to restore
};

// The device a stream belongs to (the current one for the legacy default stream).
int stream_device(void* stream);

// nullptr when the device is out of memory; CudaError on any other failure.
void* malloc_device(std::size_t bytes);
void free_device(void* ptr) noexcept;
void* malloc_pinned(std::size_t bytes);
void free_pinned(void* ptr) noexcept;

using StreamHandle = void*;  // cudaStream_t
using EventHandle = void*;   // cudaEvent_t

StreamHandle stream_create();  // non-blocking with respect to the legacy default stream
void stream_destroy(StreamHandle s) noexcept;
void stream_synchronize(StreamHandle s);
void stream_wait_event(StreamHandle s, EventHandle e);
// Later work on `waiter` waits for the work enqueued so far on `producer`, through an event
// recorded on the producer's device. Nothing when the two are the same or either is null.
void stream_wait_stream(StreamHandle waiter, StreamHandle producer);

EventHandle event_create(bool timing);
// A new event (no timing) on the device of `s`, already recorded on `s`; whoever gets it
// destroys it with event_destroy. The current device does not matter and is left as it was.
EventHandle event_record_on(StreamHandle s);
void event_destroy(EventHandle e) noexcept;
void event_record(EventHandle e, StreamHandle s);
bool event_query(EventHandle e);  // true once the work before the record is done
void event_synchronize(EventHandle e);
float event_elapsed_ms(EventHandle start, EventHandle stop);

enum class CopyKind { kHostToDevice, kDeviceToHost, kDeviceToDevice, kHostToHost };
void memcpy_async(void* dst, const void* src, std::size_t bytes, CopyKind kind, StreamHandle s);
// Device memory of `src_device` to device memory of `dst_device`, enqueued on `s` (a stream of
// either device); goes through the host when the two have no peer access.
void memcpy_peer_async(void* dst, int dst_device, const void* src, int src_device, std::size_t bytes,
                       StreamHandle s);
void device_synchronize();

// CUDA graphs. Capture is in relaxed mode, so that a capture on one thread does not forbid
// another thread's unrelated calls. A call that cannot be captured (a synchronisation, a
// pageable copy) ends the capture with the CUDA error naming it.
using GraphHandle = void*;  // cudaGraphExec_t
void stream_begin_capture(StreamHandle s);
// Ends the capture on `s` and instantiates what it recorded; the caller destroys the result.
GraphHandle stream_end_capture(StreamHandle s);
bool stream_is_capturing(StreamHandle s);
void graph_launch(GraphHandle g, StreamHandle s);
void graph_destroy(GraphHandle g) noexcept;
// Forgets the runtime's last error (not a sticky one): after a failure that was handled, so
// that the next launch check does not report it again.
void clear_last_error() noexcept;

void* cublas_create(StreamHandle s);  // cublasHandle_t bound to s
void cublas_destroy(void* handle) noexcept;
void* cudnn_create(StreamHandle s);   // cudnnHandle_t bound to s
void cudnn_destroy(void* handle) noexcept;

// "CUDA runtime 13.0, driver 13.0, cuBLAS 13.0.0, cuDNN 9.13.0" (what this process loaded).
std::string versions();

}  // namespace gpudl::cuda_api
