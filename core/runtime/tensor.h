// Tensor: a shaped, typed view of device or host memory from the caching pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gpudl/core/runtime/device.h"
#include "gpudl/core/runtime/memory_pool.h"
#include "gpudl/core/runtime/stream.h"
#include "gpudl/kernels/dtype.h"
#include "gpudl/kernels/error.h"

namespace gpudl {

// The extents of a tensor, outermost first. Every extent is >= 0.
class Shape {
 public:
  Shape() = default;
  // Throws ShapeError for a negative extent.
  Shape(std::initializer_list<std::int64_t> dims);
  explicit Shape(std::vector<std::int64_t> dims);

  std::size_t ndim() const { return dims_.size(); }
  std::int64_t operator[](std::size_t i) const { return dims_.at(i); }
  std::int64_t numel() const;
  const std::vector<std::int64_t>& dims() const { return dims_; }
  // "[2, 3, 4]"
  std::string str() const;

  friend bool operator==(const Shape& a, const Shape& b) = default;

 private:
  std::vector<std::int64_t> dims_;
};

// Owns one allocation from a MemoryPool and returns it when the last tensor using it dies.
class Storage {
 public:
  Storage(std::shared_ptr<MemoryPool> pool, std::size_t bytes, StreamKey stream, Device device, bool pinned);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }
  // Tells the pool that work on `stream` uses this memory, so it is not reused before then.
  void record_stream(const Stream& stream) const;
  // Call before enqueuing work on `stream` (a cudaStream_t) that reads or writes this memory:
  // the stream first waits for the last writer known here (the stream the
  // memory was allocated on, unless after_write named another since), and the pool keeps the
  // memory until `stream` is done with it. So a fresh tensor can be filled from the copy stream
  // while compute work enqueued earlier still uses its memory, and a tensor filled on the copy
  // stream can be read on the compute stream. Null streams (the CPU) need nothing. Work launched
  // on raw pointers without these calls is invisible here: order it with events. Throws
  // CudaError if the runtime refuses the wait.
  void before_use(StreamKey stream);
  // Call after enqueuing work on `stream` that wrote this memory: later before_use calls on
  // other streams wait for that work (through an event, so `stream` may be destroyed meanwhile).
  // Throws CudaError if the event cannot be recorded.
  void after_write(StreamKey stream);

 private:
  std::shared_ptr<MemoryPool> pool_;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  StreamKey stream_ = nullptr;
  std::mutex writer_mutex_;
  void* writer_event_ = nullptr;  // cudaEvent_t after the last write on a stream other than stream_
  Device device_;
  bool pinned_ = false;
};

// A contiguous, row-major array of one dtype on one device. Copying a Tensor shares its
// memory (like a shared_ptr); clone() copies the data. Work on CUDA tensors is enqueued on
// the device's compute stream and does not block the host unless a function says so.
class Tensor {
 public:
  // An undefined tensor (no storage); defined() is false.
  Tensor() = default;

  // Uninitialised memory. Throws ShapeError, DeviceError or OutOfMemoryError.
  static Tensor empty(const Shape& shape, DType dtype = DType::kF32, Device device = Device::cpu());
  // Host memory from the pinned pool, for asynchronous copies. Throws DeviceError in a
  // CPU-only build.
  static Tensor empty_pinned(const Shape& shape, DType dtype = DType::kF32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::kF32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::kF32, Device device = Device::cpu());

  // A tensor of T (float, Half, BFloat16, int32_t, int64_t, uint8_t) holding `values`.
  // Throws ShapeError when values.size() differs from the shape's element count.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu()) {
    return from_host(values.data(), values.size(), shape, DTypeOf<T>::value, device);
  }
  // The elements as a host vector; waits for pending work on the device's compute and copy
  // streams (and the stream of the last copy_from_async into it). Throws ValueError unless T
  // matches dtype().
  template <class T>
  std::vector<T> to_vector() const {
    std::vector<T> out(static_cast<std::size_t>(numel()));
    copy_to_host(out.data(), out.size(), DTypeOf<T>::value);
    return out;
  }

  bool defined() const { return defined_; }
  const Shape& shape() const { return shape_; }
  std::size_t ndim() const { return shape_.ndim(); }
  std::int64_t dim(std::size_t i) const { return shape_[i]; }
  std::int64_t numel() const { return shape_.numel(); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  bool is_pinned() const { return storage_ != nullptr && storage_->pinned(); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // Raw memory (nullptr for an empty tensor).
  void* raw() const;
  // Typed memory. Throws ValueError unless T matches dtype().
  template <class T>
  T* data() const {
    check_dtype(DTypeOf<T>::value, "data");
    return static_cast<T*>(raw());
  }

  // The same memory with another shape of equal element count; one extent may be -1 and
  // is then inferred. Throws ShapeError naming both shapes.
  Tensor reshape(std::vector<std::int64_t> dims) const;
  // Rows [start, stop) along the first axis, sharing memory. Throws ShapeError when out of range.
  Tensor slice(std::int64_t start, std::int64_t stop) const;
  // Row i along the first axis, with that axis dropped, sharing memory.
  Tensor operator[](std::int64_t i) const;

  // Copies src's data in (same shape and dtype, any devices). Host memory involved is safe to
  // read or reuse on return; device-to-device copies are ordered on the compute stream (between
  // two GPUs, on the destination's, and later work on the source's compute stream waits for
  // the copy; the host is not blocked). The
  // copy comes after all work enqueued so far on the device's compute and copy streams (and on
  // the stream of the last copy_from_async into either tensor), whichever wrote the data.
  // Throws ShapeError/ValueError on mismatch.
  void copy_from(const Tensor& src);
  // Enqueues the copy on `stream` without blocking the host. The copy first waits for the
  // last writer of either tensor that Storage knows (Storage::before_use: the allocation stream,
  // or the stream of the last copy_from_async or augment into it), so a fresh destination
  // filled on the compute stream is safe to copy into from the copy stream. Not seen: kernels
  // launched on raw pointers after such a write (every layer's), and reads still running on
  // other streams; order those with an event (Stream::wait, Event), as the Trainer does. Host
  // memory should be pinned for the copy to overlap other work.
  void copy_from_async(const Tensor& src, const Stream& stream);
  // A copy on `device` (this tensor itself if it is already there).
  Tensor to(Device device) const;
  // A copy of the data on the same device.
  Tensor clone() const;
  // The elements converted to `dtype` (see kernels::convert for rounding and saturation).
  Tensor cast(DType dtype) const;
  // This tensor itself when it has `dtype` already, else cast(dtype).
  Tensor as(DType dtype) const { return dtype == dtype_ ? *this : cast(dtype); }
  // Sets every element to `value`, converted to dtype(). Returns *this.
  Tensor& fill_(double value);

  // "Tensor(shape=[2, 3], dtype=f32, device=cpu)" followed by the values, nested by axis,
  // with at most `edge_items` shown at each end of an axis. Waits for pending work.
  std::string str(int edge_items = 3) const;

  void check_dtype(DType expected, const char* what) const;

 private:
  static Tensor from_host(const void* values, std::size_t count, const Shape& shape, DType dtype, Device device);
  void copy_to_host(void* out, std::size_t count, DType dtype) const;
  static Tensor allocate(const Shape& shape, DType dtype, Device device, bool pinned);

  std::shared_ptr<Storage> storage_;
  std::size_t offset_ = 0;  // bytes into the storage
  Shape shape_;
  DType dtype_ = DType::kF32;
  Device device_;
  bool defined_ = false;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);
std::ostream& operator<<(std::ostream& os, const Shape& s);

}  // namespace gpudl
