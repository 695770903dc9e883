// RAII wrappers for CUDA streams and events; on the CPU both are no-ops (work runs at once).
#pragma once

#include "gpudl/core/runtime/device.h"

namespace gpudl {

class Event;

// An ordered queue of device work. A CPU stream has no handle: CPU work completes before
// the call that enqueues it returns. Move-only; the destructor never throws.
class Stream {
 public:
  // A new stream on `device` (non-blocking with respect to the legacy default stream); the
  // calling thread's current device is left as it was. Throws DeviceError/CudaError if the
  // device cannot be used.
  static Stream create(Device device);

  Stream() = default;
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  Device device() const { return device_; }
  void* handle() const { return handle_; }  // cudaStream_t, nullptr on the CPU

  // Blocks until all work enqueued so far has finished. Throws CudaError on a failure that
  // surfaced on this stream.
  void synchronize() const;
  // Later work on this stream waits until `event` has completed (no host blocking).
  void wait(const Event& event) const;
  // Later work on this stream waits until the work enqueued so far on `producer` has finished
  // (no host blocking; nothing when both are the same stream or either is a CPU stream).
  // Throws CudaError if the runtime refuses.
  void wait(const Stream& producer) const;

 private:
  Device device_;
  void* handle_ = nullptr;
};

// A marker in a stream: record it, then query, wait on it from another stream, or time it.
class Event {
 public:
  // An event for `device`, whichever device is current; `timing` enables elapsed_ms
  // (slightly costlier to record).
  explicit Event(Device device, bool timing = false);
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event();

  void record(const Stream& stream);
  // True once the work before the last record has completed (always true on the CPU).
  bool query() const;
  void synchronize() const;
  // Milliseconds between `start`'s record and this event's (both timing events, completed).
  // Throws ValueError for CPU events.
  float elapsed_ms(const Event& start) const;

  Device device() const { return device_; }
  void* handle() const { return handle_; }

 private:
  Device device_;
  void* handle_ = nullptr;
};

}  // namespace gpudl
