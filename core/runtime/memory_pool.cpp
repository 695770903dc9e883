// The caching memory pool and its host, CUDA device and pinned-host upstreams.
#include "gpudl/core/runtime/memory_pool.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <tuple>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/core/detail/env_flag.h"
#include "gpudl/core/runtime/format.h"
#include "gpudl/kernels/error.h"

namespace gpudl {

// ---------------------------------------------------------------------------------------------
// upstreams

namespace {

// Plain host memory. CPU work finishes before the call that enqueues it returns, so every
// event is complete when it is recorded.
class HostUpstream final : public PoolUpstream {
 public:
  void* allocate(std::size_t bytes) override {
    void* p = ::operator new(bytes, std::align_val_t{alignment(bytes)}, std::nothrow);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Large tensors on 2 MiB pages where the kernel allows it (transparent huge pages are
    // often "madvise" only): one TLB entry instead of 512 for the activations and im2col
    // buffers that the CPU kernels stream through. A refusal costs nothing.
    // GPUDL_NO_HUGE_PAGES=1 turns it off.
    static detail::EnvFlag no_huge_pages("GPUDL_NO_HUGE_PAGES");
    if (p != nullptr && bytes >= kHugePage && !no_huge_pages.get()) {
      ::madvise(p, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
    }
#endif
    return p;
  }
  void deallocate(void* ptr, std::size_t bytes) noexcept override {
    ::operator delete(ptr, std::align_val_t{alignment(bytes)});
  }
  void* record_event(StreamKey) override { return nullptr; }
  bool event_done(void*) override { return true; }
  void wait_event(void*) override {}
  void release_event(void*) noexcept override {}
  std::string name() const override { return "cpu host memory"; }

 private:
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;
  static std::size_t alignment(std::size_t bytes) {
    return bytes >= kHugePage ? kHugePage : MemoryPool::kAlignment;
  }
};

// Events shared by the two CUDA upstreams. An event must be created on the device of the stream
// it is recorded on; the current device may be another one (a free from a thread driving
// another GPU, a pinned buffer used by several GPUs), so it is chosen from the stream.
class CudaEventUpstream : public PoolUpstream {
 public:
  void* record_event(StreamKey stream) override { return cuda_api::event_record_on(stream); }
  bool event_done(void* event) override { return cuda_api::event_query(event); }
  void wait_event(void* event) override { cuda_api::event_synchronize(event); }
  void release_event(void* event) noexcept override { cuda_api::event_destroy(event); }
};

class CudaDeviceUpstream final : public CudaEventUpstream {
 public:
  explicit CudaDeviceUpstream(int device) : device_(device) {}
  void* allocate(std::size_t bytes) override {
    const cuda_api::DeviceGuard guard(device_);
    return cuda_api::malloc_device(bytes);
  }
  void deallocate(void* ptr, std::size_t) noexcept override {
    // cudaFree synchronises the current device: let that be the memory's own, not the caller's.
    try {
      const cuda_api::DeviceGuard guard(device_);
      cuda_api::free_device(ptr);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "gpudl: warning: freeing cuda:%d device memory: %s\n", device_, e.what());
    }
  }
  std::string name() const override { return "cuda:" + std::to_string(device_) + " device memory"; }

 private:
  int device_;
};

class PinnedHostUpstream final : public CudaEventUpstream {
 public:
  void* allocate(std::size_t bytes) override { return cuda_api::malloc_pinned(bytes); }
  void deallocate(void* ptr, std::size_t) noexcept override { cuda_api::free_pinned(ptr); }
  std::string name() const override { return "pinned host memory"; }
};

}  // namespace

std::unique_ptr<PoolUpstream> make_host_upstream() { return std::make_unique<HostUpstream>(); }

std::unique_ptr<PoolUpstream> make_cuda_device_upstream(int device) {
  if (!cuda_api::built_with_cuda()) throw DeviceError("libgpudl was built without CUDA: no device memory pool");
  return std::make_unique<CudaDeviceUpstream>(device);
}

std::unique_ptr<PoolUpstream> make_pinned_host_upstream() {
  if (!cuda_api::built_with_cuda()) throw DeviceError("libgpudl was built without CUDA: no pinned memory pool");
  return std::make_unique<PinnedHostUpstream>();
}

PoolConfig PoolConfig::from_env() {
  PoolConfig config;
  const char* v = std::getenv("GPUDL_NO_CACHING");
  config.caching = v == nullptr || v[0] == '\0' || std::string(v) == "0";
  return config;
}

// ---------------------------------------------------------------------------------------------
// the pool

bool MemoryPool::BlockLess::operator()(const Block* a, const Block* b) const {
  // Grouped by stream, then best fit by size, then by address for a strict order.
  return std::tie(a->stream, a->size, a->ptr) < std::tie(b->stream, b->size, b->ptr);
}

MemoryPool::MemoryPool(std::unique_ptr<PoolUpstream> upstream, PoolConfig config)
    : upstream_(std::move(upstream)), config_(config) {
  if (!upstream_) throw ValueError("MemoryPool needs an upstream allocator");
}

MemoryPool::~MemoryPool() {
  std::lock_guard lock(mutex_);
  try {
    process_events(/*wait=*/true);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpudl: warning: pool shutdown: %s\n", e.what());
  }
  // Graphs still alive at shutdown are never replayed again.
  std::vector<PrivateId> ids;
  for (const auto& [id, pool] : private_) ids.push_back(id);
  for (PrivateId id : ids) release_private_locked(id);
  release_cached_locked();
  for (auto& [ptr, bytes] : direct_) upstream_->deallocate(ptr, bytes);
  // Blocks still handed out keep their segments: freeing memory in use would be worse
  // than leaking it at shutdown.
}

std::size_t MemoryPool::round_size(std::size_t bytes) {
  if (bytes < kAlignment) return kAlignment;
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

std::size_t MemoryPool::segment_size(std::size_t rounded) {
  if (rounded <= kSmallLimit) return kSmallSegment;
  if (rounded < kMidLimit) return kMidSegment;
  return (rounded + kLargeRound - 1) / kLargeRound * kLargeRound;
}

void MemoryPool::note_in_use(std::ptrdiff_t delta_bytes, std::ptrdiff_t delta_requested) {
  stats_.in_use_bytes += static_cast<std::size_t>(delta_bytes);
  stats_.requested_bytes += static_cast<std::size_t>(delta_requested);
  if (stats_.in_use_bytes > stats_.peak_in_use_bytes) stats_.peak_in_use_bytes = stats_.in_use_bytes;
}

void* MemoryPool::allocate(std::size_t bytes, StreamKey stream) {
  if (bytes == 0) return nullptr;
  std::lock_guard lock(mutex_);
  if (!config_.caching) {
    void* ptr = upstream_->allocate(bytes);
    if (ptr == nullptr) {
      throw OutOfMemoryError("out of " + upstream_->name() + ": requested " + format_bytes(bytes) +
                             " (caching off)");
    }
    direct_.emplace(ptr, bytes);
    ++stats_.allocations;
    ++stats_.upstream_allocations;
    ++stats_.segments;
    ++stats_.active_blocks;
    stats_.reserved_bytes += bytes;
    if (stats_.reserved_bytes > stats_.peak_reserved_bytes) stats_.peak_reserved_bytes = stats_.reserved_bytes;
    note_in_use(static_cast<std::ptrdiff_t>(bytes), static_cast<std::ptrdiff_t>(bytes));
    return ptr;
  }

  // Event queries are not allowed while a stream is under capture.
  if (routed_.empty()) process_events(/*wait=*/false);
  const std::size_t size = round_size(bytes);
  const auto route = routed_.find(stream);
  const PrivateId owner = route == routed_.end() ? 0 : route->second;
  Block* block = take_free_block(size, stream, owner);
  if (block != nullptr) {
    ++stats_.cache_hits;
  } else {
    block = new_segment(size, stream, owner);
    ++stats_.cache_misses;
  }
  block = split(block, size);
  block->allocated = true;
  block->requested = bytes;
  active_.emplace(block->ptr, block);
  ++stats_.allocations;
  ++stats_.active_blocks;
  note_in_use(static_cast<std::ptrdiff_t>(block->size), static_cast<std::ptrdiff_t>(bytes));
  return block->ptr;
}

MemoryPool::FreeSet& MemoryPool::free_set(bool small, PrivateId owner) {
  if (owner == 0) return small ? small_free_ : large_free_;
  Private& p = private_.at(owner);
  return small ? p.small_free : p.large_free;
}

MemoryPool::Block* MemoryPool::take_free_block(std::size_t size, StreamKey stream, PrivateId owner) {
  FreeSet& set = free_set(size <= kSmallLimit, owner);
  Block key;
  key.stream = stream;
  key.size = size;
  auto it = set.lower_bound(&key);
  if (it == set.end() || (*it)->stream != stream) return nullptr;
  Block* block = *it;
  set.erase(it);
  --stats_.cached_blocks;
  return block;
}

MemoryPool::Block* MemoryPool::new_segment(std::size_t size, StreamKey stream, PrivateId owner) {
  const std::size_t segment = segment_size(size);
  void* ptr = upstream_->allocate(segment);
  if (ptr == nullptr && !routed_.empty()) {
    // The retry below waits on events, which a capture forbids.
    throw OutOfMemoryError("out of " + upstream_->name() + ": requested " + format_bytes(size) + " (segment " +
                           format_bytes(segment) + ") during a graph capture; " + describe());
  }
  if (ptr == nullptr) {
    // Cached blocks may be what the upstream lacks: wait for pending frees, give back every
    // free segment, and try once more.
    ++stats_.oom_retries;
    process_events(/*wait=*/true);
    release_cached_locked();
    ptr = upstream_->allocate(segment);
    if (ptr == nullptr) {
      throw OutOfMemoryError("out of " + upstream_->name() + ": requested " + format_bytes(size) + " (segment " +
                             format_bytes(segment) + ") after releasing the cache; " + describe());
    }
  }
  auto* block = new Block;
  block->ptr = static_cast<char*>(ptr);
  block->size = segment;
  block->stream = stream;
  block->small = size <= kSmallLimit;
  block->owner = owner;
  ++stats_.upstream_allocations;
  ++stats_.segments;
  stats_.reserved_bytes += segment;
  if (owner != 0) stats_.private_bytes += segment;
  if (stats_.reserved_bytes > stats_.peak_reserved_bytes) stats_.peak_reserved_bytes = stats_.reserved_bytes;
  return block;
}

// Keeps the first `size` bytes of `block` and caches the rest, when the rest is worth
// keeping: any remainder in the small pool, only more than 1 MiB in the large one (smaller
// tails would fragment it).
MemoryPool::Block* MemoryPool::split(Block* block, std::size_t size) {
  const std::size_t remaining = block->size - size;
  const bool worth = block->small ? remaining >= kAlignment : remaining > kSmallLimit;
  if (!worth) return block;
  auto* rest = new Block;
  rest->ptr = block->ptr + size;
  rest->size = remaining;
  rest->stream = block->stream;
  rest->small = block->small;
  rest->owner = block->owner;
  rest->prev = block;
  rest->next = block->next;
  if (block->next != nullptr) block->next->prev = rest;
  block->next = rest;
  block->size = size;
  free_set(rest->small, rest->owner).insert(rest);
  ++stats_.cached_blocks;
  return block;
}

void MemoryPool::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard lock(mutex_);
  if (!config_.caching) {
    auto it = direct_.find(ptr);
    if (it == direct_.end()) throw ValueError("MemoryPool::deallocate: pointer was not allocated by this pool");
    const std::size_t bytes = it->second;
    direct_.erase(it);
    upstream_->deallocate(ptr, bytes);
    ++stats_.frees;
    ++stats_.upstream_frees;
    --stats_.segments;
    --stats_.active_blocks;
    stats_.reserved_bytes -= bytes;
    note_in_use(-static_cast<std::ptrdiff_t>(bytes), -static_cast<std::ptrdiff_t>(bytes));
    return;
  }
  auto it = active_.find(ptr);
  if (it == active_.end()) throw ValueError("MemoryPool::deallocate: pointer was not allocated by this pool");
  Block* block = it->second;
  // Every event is recorded before the pool changes: should one fail, the block stays handed
  // out, whole and accounted for, instead of leaving the pool's books (and its segment) behind.
  std::vector<void*> events;
  events.reserve(block->other_streams.size());
  if (block->owner != 0) block->other_streams.clear();  // see record_stream
  try {
    for (StreamKey s : block->other_streams) {
      void* event = upstream_->record_event(s);
      if (event != nullptr) events.push_back(event);  // null: already past, nothing to wait for
    }
    pending_.reserve(pending_.size() + events.size());
  } catch (...) {
    for (void* event : events) upstream_->release_event(event);
    throw;
  }
  active_.erase(it);
  block->allocated = false;
  ++stats_.frees;
  --stats_.active_blocks;
  note_in_use(-static_cast<std::ptrdiff_t>(block->size), -static_cast<std::ptrdiff_t>(block->requested));
  block->requested = 0;
  block->other_streams.clear();
  for (void* event : events) {
    pending_.push_back({event, block});
    ++block->pending_events;
  }
  if (block->pending_events > 0) {
    ++stats_.pending_blocks;
    return;
  }
  free_block(block);
}

void MemoryPool::free_block(Block* block) {
  auto mergeable = [](const Block* b) { return b != nullptr && !b->allocated && b->pending_events == 0; };
  FreeSet& set = free_set(block->small, block->owner);
  if (mergeable(block->prev)) {
    Block* prev = block->prev;
    set.erase(prev);
    --stats_.cached_blocks;
    prev->size += block->size;
    prev->next = block->next;
    if (block->next != nullptr) block->next->prev = prev;
    delete block;
    block = prev;
  }
  if (mergeable(block->next)) {
    Block* next = block->next;
    set.erase(next);
    --stats_.cached_blocks;
    block->size += next->size;
    block->next = next->next;
    if (next->next != nullptr) next->next->prev = block;
    delete next;
  }
  set.insert(block);
  ++stats_.cached_blocks;
}

void MemoryPool::record_stream(void* ptr, StreamKey stream) {
  std::lock_guard lock(mutex_);
  if (!config_.caching) {
    if (direct_.count(ptr) == 0) throw ValueError("MemoryPool::record_stream: pointer was not allocated by this pool");
    return;  // freed straight to the upstream, which orders frees itself
  }
  auto it = active_.find(ptr);
  if (it == active_.end()) throw ValueError("MemoryPool::record_stream: pointer was not allocated by this pool");
  Block* block = it->second;
  if (stream == block->stream || block->owner != 0) return;
  for (StreamKey s : block->other_streams) {
    if (s == stream) return;
  }
  block->other_streams.push_back(stream);
}

void MemoryPool::process_events(bool wait) {
  std::size_t kept = 0;
  for (std::size_t i = 0; i < pending_.size(); ++i) {
    Pending p = pending_[i];
    if (wait) upstream_->wait_event(p.event);
    if (!wait && !upstream_->event_done(p.event)) {
      pending_[kept++] = p;
      continue;
    }
    upstream_->release_event(p.event);
    if (--p.block->pending_events == 0) {
      --stats_.pending_blocks;
      free_block(p.block);
    }
  }
  pending_.resize(kept);
}

void MemoryPool::release_cached() {
  std::lock_guard lock(mutex_);
  process_events(/*wait=*/false);
  release_cached_locked();
}

void MemoryPool::release_cached_locked() {
  for (FreeSet* set : {&small_free_, &large_free_}) {
    for (auto it = set->begin(); it != set->end();) {
      Block* block = *it;
      if (block->prev != nullptr || block->next != nullptr) {
        ++it;
        continue;
      }
      upstream_->deallocate(block->ptr, block->size);
      ++stats_.upstream_frees;
      --stats_.segments;
      --stats_.cached_blocks;
      stats_.reserved_bytes -= block->size;
      delete block;
      it = set->erase(it);
    }
  }
}

MemoryPool::PrivateId MemoryPool::create_private() {
  std::lock_guard lock(mutex_);
  const PrivateId id = next_private_++;
  private_.emplace(id, Private{});
  return id;
}

void MemoryPool::begin_private(PrivateId id, StreamKey stream) {
  std::lock_guard lock(mutex_);
  if (private_.count(id) == 0) throw ValueError("MemoryPool::begin_private: no private pool " + std::to_string(id));
  if (!routed_.emplace(stream, id).second) {
    throw ValueError("MemoryPool::begin_private: the stream already allocates from private pool " +
                     std::to_string(routed_.at(stream)));
  }
}

void MemoryPool::end_private(StreamKey stream) {
  std::lock_guard lock(mutex_);
  if (routed_.erase(stream) == 0) throw ValueError("MemoryPool::end_private: the stream has no private pool");
}

void MemoryPool::release_private(PrivateId id) {
  std::lock_guard lock(mutex_);
  release_private_locked(id);
}

void MemoryPool::release_private_locked(PrivateId id) {
  auto found = private_.find(id);
  if (found == private_.end()) return;
  for (auto it = routed_.begin(); it != routed_.end();) it = it->second == id ? routed_.erase(it) : std::next(it);
  // Every block of the pool's segments becomes shared: the free ones join the shared sets
  // now, the ones in use when freed. (Private blocks never wait on events: see deallocate.)
  std::size_t bytes = 0;
  for (auto& [ptr, block] : active_) {
    if (block->owner != id) continue;
    block->owner = 0;
    bytes += block->size;
  }
  for (FreeSet* set : {&found->second.small_free, &found->second.large_free}) {
    for (Block* block : *set) {
      block->owner = 0;
      bytes += block->size;
      free_set(block->small).insert(block);
    }
  }
  stats_.private_bytes -= bytes;
  private_.erase(found);
}

PoolStats MemoryPool::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void MemoryPool::reset_peak_stats() {
  std::lock_guard lock(mutex_);
  stats_.peak_in_use_bytes = stats_.in_use_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

std::string MemoryPool::describe() const {
  return "in use " + format_bytes(stats_.in_use_bytes) + ", reserved " + format_bytes(stats_.reserved_bytes) + " in " +
         std::to_string(stats_.segments) + " segment(s)";
}

}  // namespace gpudl
