// Tensor construction, views, copies between devices, and printing.
#include "gpudl/core/runtime/tensor.h"

#include <cstdio>
#include <cstring>
#include <limits>
#include <ostream>
#include <sstream>

#include "gpudl/core/runtime/context.h"
#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/core/runtime/ops.h"
#include "gpudl/kernels/dispatch.h"

namespace gpudl {

// ---------------------------------------------------------------------------------------------
// Shape

Shape::Shape(std::initializer_list<std::int64_t> dims) : Shape(std::vector<std::int64_t>(dims)) {}

Shape::Shape(std::vector<std::int64_t> dims) : dims_(std::move(dims)) {
  for (std::int64_t d : dims_) {
    if (d < 0) {
      std::string text = "[";
      for (std::size_t i = 0; i < dims_.size(); ++i) text += (i ? ", " : "") + std::to_string(dims_[i]);
      throw ShapeError("shape " + text + "] has a negative extent");
    }
  }
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : dims_) n *= d;
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (std::size_t i = 0; i < dims_.size(); ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
  return s + "]";
}

std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

// ---------------------------------------------------------------------------------------------
// Storage

Storage::Storage(std::shared_ptr<MemoryPool> pool, std::size_t bytes, StreamKey stream, Device device, bool pinned)
    : pool_(std::move(pool)), bytes_(bytes), stream_(stream), device_(device), pinned_(pinned) {
  data_ = pool_->allocate(bytes, stream);
}

Storage::~Storage() {
  if (writer_event_ != nullptr) cuda_api::event_destroy(writer_event_);
  try {
    pool_->deallocate(data_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpudl: warning: freeing tensor storage: %s\n", e.what());
  }
}

void Storage::record_stream(const Stream& stream) const {
  if (data_ != nullptr && stream.handle() != stream_) pool_->record_stream(data_, stream.handle());
}

void Storage::before_use(StreamKey stream) {
  if (stream == nullptr || data_ == nullptr) return;
  {
    std::lock_guard lock(writer_mutex_);
    if (writer_event_ != nullptr) {
      // Also on the writer's own stream: that costs nothing, and a destroyed stream's handle may
      // have been handed out again.
      cuda_api::stream_wait_event(stream, writer_event_);
    } else {
      // Memory fresh from the pool belongs to the stream it was allocated on: work enqueued there
      // may still read it (a block freed and handed out again at once) or have just filled it.
      cuda_api::stream_wait_stream(stream, stream_);
    }
  }
  if (stream != stream_) pool_->record_stream(data_, stream);
}

void Storage::after_write(StreamKey stream) {
  if (stream == nullptr || data_ == nullptr) return;
  std::lock_guard lock(writer_mutex_);
  // A write on the allocation stream came after before_use waited for every earlier writer, so
  // that stream is the last writer again and needs no event.
  void* event = stream == stream_ ? nullptr : cuda_api::event_record_on(stream);
  if (writer_event_ != nullptr) cuda_api::event_destroy(writer_event_);
  writer_event_ = event;
}

// ---------------------------------------------------------------------------------------------
// Tensor

namespace {

// Before the compute stream of `ctx` reads or writes a (and b, if given): work on the copy
// stream (prefetches, augmentation launched on raw pointers) may have written them or may still
// read them, and so may the stream of the last copy_from_async into them. No host blocking.
void order_on_compute(Context& ctx, const Tensor& a, const Tensor* b = nullptr) {
  const Stream& s = ctx.compute_stream();
  s.wait(ctx.copy_stream());
  if (a.storage() != nullptr) a.storage()->before_use(s.handle());
  if (b != nullptr && b->storage() != nullptr) b->storage()->before_use(s.handle());
}

}  // namespace

Tensor Tensor::allocate(const Shape& shape, DType dtype, Device device, bool pinned) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.device_ = device;
  t.defined_ = true;
  const std::int64_t n = shape.numel();
  if (n > 0) {
    if (static_cast<std::uint64_t>(n) > std::numeric_limits<std::size_t>::max() / dtype_size(dtype)) {
      throw ShapeError("shape " + shape.str() + " is too large to allocate");
    }
    const std::size_t bytes = static_cast<std::size_t>(n) * dtype_size(dtype);
    if (pinned) {
      t.storage_ = std::make_shared<Storage>(Context::pinned_pool(), bytes, nullptr, device, true);
    } else {
      Context& ctx = Context::get(device);
      t.storage_ = std::make_shared<Storage>(ctx.memory_pool_ptr(), bytes, ctx.compute_stream().handle(), device,
                                             false);
    }
  }
  return t;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) { return allocate(shape, dtype, device, false); }

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype) {
  if (!cuda_api::built_with_cuda()) {
    throw DeviceError("pinned host memory needs the CUDA backend; this libgpudl was built without CUDA");
  }
  return allocate(shape, dtype, Device::cpu(), true);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

void* Tensor::raw() const { return storage_ ? static_cast<char*>(storage_->data()) + offset_ : nullptr; }

void Tensor::check_dtype(DType expected, const char* what) const {
  if (dtype_ != expected) {
    throw ValueError(std::string(what) + ": tensor " + shape_.str() + " has dtype " + dtype_name(dtype_) + ", expected " +
                     dtype_name(expected));
  }
}

Tensor Tensor::from_host(const void* values, std::size_t count, const Shape& shape, DType dtype, Device device) {
  if (static_cast<std::int64_t>(count) != shape.numel()) {
    throw ShapeError("from_vector: " + std::to_string(count) + " values do not fill shape " + shape.str() + " (" +
                     std::to_string(shape.numel()) + " elements)");
  }
  Tensor t = empty(shape, dtype, device);
  if (count == 0) return t;
  if (device.is_cpu()) {
    std::memcpy(t.raw(), values, t.nbytes());
  } else {
    const Stream& s = Context::get(device).compute_stream();
    cuda_api::memcpy_async(t.raw(), values, t.nbytes(), cuda_api::CopyKind::kHostToDevice, s.handle());
    s.synchronize();  // `values` belongs to the caller and may die on return
  }
  return t;
}

void Tensor::copy_to_host(void* out, std::size_t count, DType dtype) const {
  check_dtype(dtype, "to_vector");
  if (count == 0) return;
  if (device_.is_cpu()) {
    std::memcpy(out, raw(), nbytes());
  } else {
    Context& ctx = Context::get(device_);
    const Stream& s = ctx.compute_stream();
    order_on_compute(ctx, *this);
    cuda_api::memcpy_async(out, raw(), nbytes(), cuda_api::CopyKind::kDeviceToHost, s.handle());
    s.synchronize();
  }
}

Tensor Tensor::reshape(std::vector<std::int64_t> dims) const {
  std::size_t inferred = dims.size();
  std::int64_t known = 1;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == -1 && inferred == dims.size()) {
      inferred = i;
    } else if (dims[i] < 0) {
      throw ShapeError("reshape: invalid target extent " + std::to_string(dims[i]) + " (only one -1 is allowed)");
    } else {
      known *= dims[i];
    }
  }
  auto describe = [&] {
    std::string target = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) target += (i ? ", " : "") + std::to_string(dims[i]);
    return target + "]";
  };
  if (inferred < dims.size()) {
    if (known == 0 || numel() % known != 0) {
      throw ShapeError("reshape: cannot view " + shape_.str() + " (" + std::to_string(numel()) + " elements) as " +
                       describe());
    }
    dims[inferred] = numel() / known;
  }
  Shape target(std::move(dims));
  if (target.numel() != numel()) {
    throw ShapeError("reshape: cannot view " + shape_.str() + " (" + std::to_string(numel()) + " elements) as " +
                     target.str() + " (" + std::to_string(target.numel()) + " elements)");
  }
  Tensor t = *this;
  t.shape_ = std::move(target);
  return t;
}

Tensor Tensor::slice(std::int64_t start, std::int64_t stop) const {
  if (ndim() == 0) throw ShapeError("slice: a scalar tensor has no first axis to slice");
  if (start < 0 || stop < start || stop > shape_[0]) {
    throw ShapeError("slice: rows [" + std::to_string(start) + ", " + std::to_string(stop) + ") are out of range for " +
                     shape_.str());
  }
  Tensor t = *this;
  std::vector<std::int64_t> dims = shape_.dims();
  dims[0] = stop - start;
  t.shape_ = Shape(std::move(dims));
  const std::size_t row_bytes = static_cast<std::size_t>(shape_.numel() / std::max<std::int64_t>(shape_[0], 1)) *
                                dtype_size(dtype_);
  t.offset_ = offset_ + static_cast<std::size_t>(start) * row_bytes;
  return t;
}

Tensor Tensor::operator[](std::int64_t i) const {
  if (ndim() == 0) throw ShapeError("index: a scalar tensor has no first axis to index");
  if (i < 0 || i >= shape_[0]) {
    throw ShapeError("index " + std::to_string(i) + " is out of range for " + shape_.str());
  }
  Tensor t = slice(i, i + 1);
  t.shape_ = Shape(std::vector<std::int64_t>(shape_.dims().begin() + 1, shape_.dims().end()));
  return t;
}

namespace {
void check_same(const Tensor& dst, const Tensor& src, const char* what) {
  if (!dst.defined() || !src.defined()) throw ValueError(std::string(what) + ": undefined tensor");
  if (dst.shape() != src.shape()) {
    throw ShapeError(std::string(what) + ": destination " + dst.shape().str() + " and source " + src.shape().str() +
                     " differ");
  }
  if (dst.dtype() != src.dtype()) {
    throw ValueError(std::string(what) + ": destination dtype " + dtype_name(dst.dtype()) + " and source dtype " +
                     dtype_name(src.dtype()) + " differ (use cast)");
  }
}
}  // namespace

void Tensor::copy_from(const Tensor& src) {
  check_same(*this, src, "copy_from");
  const std::size_t bytes = nbytes();
  if (bytes == 0 || raw() == src.raw()) return;
  if (device_.is_cpu() && src.device_.is_cpu()) {
    std::memmove(raw(), src.raw(), bytes);
  } else if (device_.is_cuda() && src.device_.is_cpu()) {
    Context& ctx = Context::get(device_);
    const Stream& s = ctx.compute_stream();
    order_on_compute(ctx, *this);
    if (src.storage_) src.storage_->before_use(s.handle());  // pinned memory an async copy fills
    cuda_api::memcpy_async(raw(), src.raw(), bytes, cuda_api::CopyKind::kHostToDevice, s.handle());
    storage_->after_write(s.handle());
    s.synchronize();
  } else if (device_.is_cpu() && src.device_.is_cuda()) {
    Context& ctx = Context::get(src.device_);
    const Stream& s = ctx.compute_stream();
    order_on_compute(ctx, src);
    if (storage_) storage_->before_use(s.handle());  // pinned memory an async copy still reads
    cuda_api::memcpy_async(raw(), src.raw(), bytes, cuda_api::CopyKind::kDeviceToHost, s.handle());
    s.synchronize();
  } else if (device_ == src.device_) {
    Context& ctx = Context::get(device_);
    order_on_compute(ctx, src, this);
    ops::copy(*this, src);
    storage_->after_write(ctx.compute_stream().handle());
  } else {
    // Between two GPUs, on the destination's compute stream, ordered by events rather than by
    // the host: the copy waits for every writer of the source on its device, the source's pool
    // keeps the memory until the copy is done, and the source's compute stream waits for the
    // copy, so work enqueued there later (overwriting the source) cannot race it.
    Context& from = Context::get(src.device_);
    order_on_compute(from, src);
    Context& to = Context::get(device_);
    const Stream& s = to.compute_stream();
    order_on_compute(to, *this);
    s.wait(from.compute_stream());
    src.storage_->before_use(s.handle());
    cuda_api::memcpy_peer_async(raw(), device_.index(), src.raw(), src.device_.index(), bytes, s.handle());
    storage_->after_write(s.handle());
    from.compute_stream().wait(s);
  }
}

void Tensor::copy_from_async(const Tensor& src, const Stream& stream) {
  check_same(*this, src, "copy_from_async");
  const std::size_t bytes = nbytes();
  if (bytes == 0) return;
  if (device_.is_cpu() && src.device_.is_cpu()) {
    std::memmove(raw(), src.raw(), bytes);
    return;
  }
  if (stream.device().is_cpu()) throw DeviceError("copy_from_async: a copy involving a GPU needs a CUDA stream");
  const auto kind = device_.is_cpu()       ? cuda_api::CopyKind::kDeviceToHost
                    : src.device_.is_cpu() ? cuda_api::CopyKind::kHostToDevice
                                           : cuda_api::CopyKind::kDeviceToDevice;
  // The copy waits for the last writer of each buffer (for a fresh destination, the compute
  // stream that may still use its memory), and neither buffer is reused by its pool before
  // this stream has finished with it.
  if (src.storage_) src.storage_->before_use(stream.handle());
  if (storage_) storage_->before_use(stream.handle());
  if (device_.is_cuda() && src.device_.is_cuda() && device_ != src.device_) {
    cuda_api::memcpy_peer_async(raw(), device_.index(), src.raw(), src.device_.index(), bytes, stream.handle());
  } else {
    cuda_api::memcpy_async(raw(), src.raw(), bytes, kind, stream.handle());
  }
  if (storage_) storage_->after_write(stream.handle());
}

Tensor Tensor::to(Device device) const {
  if (device == device_) return *this;
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device_);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::cast(DType dtype) const {
  Tensor t = empty(shape_, dtype, device_);
  ops::cast(t, *this);
  return t;
}

Tensor& Tensor::fill_(double value) {
  ops::fill(*this, value);
  return *this;
}

// ---------------------------------------------------------------------------------------------
// printing

namespace {

void print_values(std::ostringstream& os, const Tensor& host, const std::vector<std::int64_t>& dims, std::size_t axis,
                  std::int64_t base, int edge, int indent) {
  const std::int64_t n = dims.empty() ? 1 : dims[axis];
  std::int64_t inner = 1;
  for (std::size_t i = axis + 1; i < dims.size(); ++i) inner *= dims[i];
  if (dims.empty()) {
    kernels::detail::visit_dtype(host.dtype(), [&](auto tag) {
      using T = decltype(tag);
      os << kernels::to_double(static_cast<const T*>(host.raw())[0]);
    });
    return;
  }
  os << '[';
  for (std::int64_t i = 0; i < n; ++i) {
    if (n > 2 * edge && i == edge) {
      os << (axis + 1 == dims.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - edge - 1;
      continue;
    }
    if (axis + 1 == dims.size()) {
      kernels::detail::visit_dtype(host.dtype(), [&](auto tag) {
        using T = decltype(tag);
        os << kernels::to_double(static_cast<const T*>(host.raw())[base + i]);
      });
      if (i + 1 < n) os << ", ";
    } else {
      print_values(os, host, dims, axis + 1, base + i * inner, edge, indent + 1);
      if (i + 1 < n) os << ",\n" << std::string(indent + 1, ' ');
    }
  }
  os << ']';
}

}  // namespace

std::string Tensor::str(int edge_items) const {
  std::ostringstream os;
  os << "Tensor(shape=" << shape_.str() << ", dtype=" << dtype_name(dtype_) << ", device=" << device_.str() << ")";
  if (!defined_) return os.str() + " undefined";
  if (numel() == 0) return os.str() + " []";
  const Tensor host = to(Device::cpu());
  os << '\n';
  print_values(os, host, shape_.dims(), 0, 0, edge_items, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace gpudl
