// Stream and Event: ownership of CUDA handles, no-ops on the CPU.
#include "gpudl/core/runtime/stream.h"

#include <utility>

#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/kernels/error.h"

namespace gpudl {

Stream Stream::create(Device device) {
  Stream s;
  s.device_ = device;
  if (device.is_cuda()) {
    // Streams belong to the device current at creation; the caller's current device stays.
    const cuda_api::DeviceGuard guard(device.index());
    s.handle_ = cuda_api::stream_create();
  }
  return s;
}

Stream::Stream(Stream&& other) noexcept
    : device_(other.device_), handle_(std::exchange(other.handle_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) cuda_api::stream_destroy(handle_);
    device_ = other.device_;
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

Stream::~Stream() {
  if (handle_ != nullptr) cuda_api::stream_destroy(handle_);
}

void Stream::synchronize() const {
  if (device_.is_cuda()) cuda_api::stream_synchronize(handle_);
}

void Stream::wait(const Event& event) const {
  if (device_.is_cuda() && event.handle() != nullptr) cuda_api::stream_wait_event(handle_, event.handle());
}

void Stream::wait(const Stream& producer) const {
  if (device_.is_cuda() && producer.device_.is_cuda()) cuda_api::stream_wait_stream(handle_, producer.handle_);
}

Event::Event(Device device, bool timing) : device_(device) {
  if (device.is_cuda()) {
    const cuda_api::DeviceGuard guard(device.index());
    handle_ = cuda_api::event_create(timing);
  }
}

Event::Event(Event&& other) noexcept : device_(other.device_), handle_(std::exchange(other.handle_, nullptr)) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) cuda_api::event_destroy(handle_);
    device_ = other.device_;
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

Event::~Event() {
  if (handle_ != nullptr) cuda_api::event_destroy(handle_);
}

void Event::record(const Stream& stream) {
  if (stream.device() != device_) {
    throw DeviceError("Event::record: event on " + device_.str() + " recorded on a stream of " + stream.device().str());
  }
  if (handle_ != nullptr) cuda_api::event_record(handle_, stream.handle());
}

bool Event::query() const { return handle_ == nullptr || cuda_api::event_query(handle_); }

void Event::synchronize() const {
  if (handle_ != nullptr) cuda_api::event_synchronize(handle_);
}

float Event::elapsed_ms(const Event& start) const {
  if (handle_ == nullptr || start.handle_ == nullptr) throw ValueError("Event::elapsed_ms needs two CUDA events");
  return cuda_api::event_elapsed_ms(start.handle_, handle_);
}

}  // namespace gpudl
