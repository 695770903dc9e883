// data::augment: contract checks, cached device copies of the normalisation, dispatch on the caller's stream.
#include "gpudl/core/data/augment.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <utility>

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/runtime/context.h"
#include "gpudl/kernels/augment.h"

namespace gpudl::data {
namespace {

void check_f32(const Tensor& t, const char* name) {
  if (!t.defined()) throw ValueError(std::string("augment: ") + name + " is an undefined tensor");
  if (t.dtype() != DType::kF32) {
    throw ValueError(std::string("augment: ") + name + " " + t.shape().str() + " has dtype " + dtype_name(t.dtype()) +
                     ", only f32 is supported");
  }
}

bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0 || a.device() != b.device()) return false;
  const auto* a0 = static_cast<const char*>(a.raw());
  const auto* b0 = static_cast<const char*>(b.raw());
  // std::less gives a total order even for pointers into different allocations.
  const std::less<const char*> before;
  return before(a0, b0 + b.nbytes()) && before(b0, a0 + a.nbytes());
}

void check_options(const AugmentOptions& o, std::int64_t c, std::int64_t h, std::int64_t w) {
  const std::int64_t limit = std::min(h, w);
  if (o.crop_padding < 0 || o.crop_padding > limit) {
    throw ValueError("augment: crop_padding " + std::to_string(o.crop_padding) + " is outside [0, " +
                     std::to_string(limit) + "] for " + std::to_string(h) + " x " + std::to_string(w) + " images");
  }
  if (o.reflect_padding && o.crop_padding >= limit) {
    throw ValueError("augment: reflect padding of " + std::to_string(o.crop_padding) + " needs images larger than " +
                     std::to_string(o.crop_padding) + " pixels on each side, got " + std::to_string(h) + " x " +
                     std::to_string(w));
  }
  if (o.mean.empty() && o.stddev.empty()) return;
  const auto channels = static_cast<std::size_t>(c);
  if (o.mean.size() != channels || o.stddev.size() != channels) {
    throw ValueError("augment: mean has " + std::to_string(o.mean.size()) + " values and stddev " +
                     std::to_string(o.stddev.size()) + "; expected " + std::to_string(c) +
                     " each (one per channel) or none");
  }
  for (std::size_t i = 0; i < channels; ++i) {
    if (!std::isfinite(o.mean[i])) {
      throw ValueError("augment: mean[" + std::to_string(i) + "] = " + std::to_string(o.mean[i]) + " is not finite");
    }
    if (!(o.stddev[i] > 0.0f) || !std::isfinite(o.stddev[i])) {  // the first test also rejects NaN
      throw ValueError("augment: stddev[" + std::to_string(i) + "] = " + std::to_string(o.stddev[i]) +
                       " must be > 0 and finite");
    }
  }
}

// [mean..., 1 / stddev...]: the values both kernels read, computed once here in float so that
// the two backends multiply by the very same numbers.
std::vector<float> normalization_values(const AugmentOptions& o) {
  std::vector<float> values(o.mean);
  for (const float s : o.stddev) values.push_back(1.0f / s);
  return values;
}

// A training loop cycles through one or two option sets; a handful of entries covers any
// realistic program while bounding what a pathological one can pin on the device.
constexpr std::size_t kMaxCachedNormalizations = 16;

// The normalisation values on each device, uploaded on first use so a training loop does not
// copy them for every batch. Most recently used first.
class NormalizationCache {
 public:
  // The device tensor holding `values` on `device`, which stays valid for work already
  // enqueued on `stream` even if a later call evicts it.
  Tensor get(Device device, const std::vector<float>& values, void* stream) {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(entries_.begin(), entries_.end(),
                           [&](const Entry& e) { return e.device == device && e.values == values; });
    if (it == entries_.end()) {
      // Synchronous on the compute stream: complete before any stream reads it.
      Tensor t = Tensor::from_vector(values, Shape{static_cast<std::int64_t>(values.size())}, device);
      entries_.push_front(Entry{device, values, std::move(t)});
      if (entries_.size() > kMaxCachedNormalizations) entries_.pop_back();
    } else if (it != entries_.begin()) {
      entries_.splice(entries_.begin(), entries_, it);
    }
    const Tensor& t = entries_.front().tensor;
    // Eviction frees the memory to the pool; this keeps it from being handed out again
    // before `stream` has finished reading it.
    Context::get(device).memory_pool().record_stream(t.raw(), stream);
    return t;
  }

 private:
  struct Entry {
    Device device;
    std::vector<float> values;
    Tensor tensor;
  };
  std::mutex mutex_;
  std::list<Entry> entries_;
};

NormalizationCache& normalization_cache() {
  // Never destroyed: its device memory must not be returned to a pool during static
  // destruction, after the CUDA runtime may already be gone.
  static auto* cache = new NormalizationCache;
  return *cache;
}

}  // namespace

void augment(const Tensor& out, const Tensor& in, const AugmentOptions& options, std::uint64_t seed,
             std::uint64_t offset, const kernels::Exec& exec) {
  check_f32(out, "out");
  check_f32(in, "in");
  if (in.ndim() != 4) throw ShapeError("augment: in " + in.shape().str() + " must be 4-D (N, C, H, W)");
  if (out.shape() != in.shape()) {
    throw ShapeError("augment: out " + out.shape().str() + " and in " + in.shape().str() + " differ in shape");
  }
  if (out.device() != in.device()) {
    throw DeviceError("augment: out on " + out.device().str() + " and in on " + in.device().str() +
                      "; move one with to()");
  }
  if (overlaps(out, in)) throw ValueError("augment: out " + out.shape().str() + " shares memory with in");
  const std::int64_t n = in.dim(0), c = in.dim(1), h = in.dim(2), w = in.dim(3);
  check_options(options, c, h, w);
  const Device device = in.device();
  if (in.numel() == 0) return;

  // [mean..., 1 / stddev...] where the kernel reads them: host memory, or a cached device copy.
  Tensor values;
  if (!options.mean.empty()) {
    const std::vector<float> host = normalization_values(options);
    values = device.is_cuda() ? normalization_cache().get(device, host, exec.stream)
                              : Tensor::from_vector(host, Shape{static_cast<std::int64_t>(host.size())});
  }
  const float* mean = values.defined() ? values.data<float>() : nullptr;
  const float* inv_std = values.defined() ? values.data<float>() + c : nullptr;
  // Like a copy_from_async, the kernel may run on a stream other than the one that last wrote
  // the tensors (a fresh `out` was poisoned or allocated on the compute stream): wait for that
  // writer, keep the memory from the pool until this stream is done, and tell later readers.
  if (device.is_cuda()) {
    out.storage()->before_use(exec.stream);
    in.storage()->before_use(exec.stream);
  }
  detail::twin_on<&kernels::cpu::augment_images, &kernels::cuda::augment_images>(
      device, exec, out.data<float>(), in.data<float>(), n, c, h, w, options.crop_padding, options.reflect_padding,
      options.horizontal_flip,
      mean, inv_std, seed, offset);
  if (device.is_cuda()) out.storage()->after_write(exec.stream);
}

AugmentOptions cifar10_augmentation() {
  AugmentOptions o = cifar10_normalization();
  o.crop_padding = 4;
  o.horizontal_flip = true;
  return o;
}

AugmentOptions cifar10_normalization() {
  AugmentOptions o;
  o.mean = {0.4914f, 0.4822f, 0.4465f};
  o.stddev = {0.2470f, 0.2435f, 0.2616f};
  return o;
}

}  // namespace gpudl::data
