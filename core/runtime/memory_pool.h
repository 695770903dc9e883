// The caching memory pool: size classes, small/large pools, split and merge, stream-ordered
// reuse, release-and-retry on out-of-memory, statistics; generic over its upstream allocator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace gpudl {

// Identifies a stream to the pool (a cudaStream_t for CUDA upstreams, any token for others).
using StreamKey = void*;

// Where the pool's memory comes from, and how it tells when a stream is past a point.
class PoolUpstream {
 public:
  virtual ~PoolUpstream() = default;
  // `bytes` of fresh memory, or nullptr when the upstream is out of memory. Any other
  // failure throws (CudaError for CUDA upstreams).
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* ptr, std::size_t bytes) noexcept = 0;
  // A marker after the work enqueued so far on `stream`; event_done() turns true once that
  // work has finished. A null handle means "already done".
  virtual void* record_event(StreamKey stream) = 0;
  virtual bool event_done(void* event) = 0;
  virtual void wait_event(void* event) = 0;
  virtual void release_event(void* event) noexcept = 0;
  // What the memory is, for messages: "cuda:0 device memory".
  virtual std::string name() const = 0;
};

// Upstreams of the three pools libgpudl uses. The CUDA ones throw DeviceError in a CPU build.
std::unique_ptr<PoolUpstream> make_host_upstream();
std::unique_ptr<PoolUpstream> make_cuda_device_upstream(int device);
std::unique_ptr<PoolUpstream> make_pinned_host_upstream();

struct PoolStats {
  std::size_t in_use_bytes = 0;         // handed out, in whole (rounded) blocks
  std::size_t requested_bytes = 0;      // handed out, as asked for
  std::size_t reserved_bytes = 0;       // held from the upstream: in use + cached
  std::size_t peak_in_use_bytes = 0;
  std::size_t peak_reserved_bytes = 0;
  std::uint64_t allocations = 0;        // allocate() calls that returned memory
  std::uint64_t frees = 0;
  std::uint64_t cache_hits = 0;         // served from a cached block
  std::uint64_t cache_misses = 0;       // needed a new segment from the upstream
  std::uint64_t upstream_allocations = 0;
  std::uint64_t upstream_frees = 0;
  std::uint64_t oom_retries = 0;        // upstream out of memory: cache released, retried
  std::size_t segments = 0;             // upstream allocations currently held
  std::size_t active_blocks = 0;
  std::size_t cached_blocks = 0;        // free blocks ready for reuse
  std::size_t pending_blocks = 0;       // freed, waiting for another stream to pass them
  std::size_t private_bytes = 0;        // reserved by graph-private pools (part of reserved)
};

struct PoolConfig {
  // false: every allocate/deallocate goes straight to the upstream (for memory checkers).
  bool caching = true;
  // caching = false when the environment variable GPUDL_NO_CACHING is set to anything but "0".
  static PoolConfig from_env();
};

// Thread-safe. A block freed on stream S is reused for requests on S at once (stream order
// makes that safe); if it was also used on other streams (record_stream), it is reused only
// after events recorded on each of them at free time have completed.
class MemoryPool {
 public:
  static constexpr std::size_t kAlignment = 512;              // every size rounds up to this
  static constexpr std::size_t kSmallLimit = 1u << 20;        // up to 1 MiB: small pool
  static constexpr std::size_t kSmallSegment = 2u << 20;      // small blocks are carved from 2 MiB
  static constexpr std::size_t kMidLimit = 10u << 20;         // 1–10 MiB requests share...
  static constexpr std::size_t kMidSegment = 20u << 20;       // ...20 MiB segments
  static constexpr std::size_t kLargeRound = 2u << 20;        // larger ones round to 2 MiB

  explicit MemoryPool(std::unique_ptr<PoolUpstream> upstream, PoolConfig config = PoolConfig::from_env());
  ~MemoryPool();
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  // At least `bytes` bytes, 512-byte aligned, for use on `stream`; nullptr for 0 bytes.
  // Throws OutOfMemoryError (naming the request and the pool's state) when the upstream
  // fails even after the cache was released and the request retried once.
  void* allocate(std::size_t bytes, StreamKey stream);
  // Returns memory from allocate(); nullptr is ignored. Throws ValueError for a pointer this
  // pool did not hand out.
  void deallocate(void* ptr);
  // Declares that `ptr` is also used by work on `stream`, so it is not reused before that
  // work is done. Throws ValueError for an unknown pointer.
  void record_stream(void* ptr, StreamKey stream);
  // Gives every wholly free segment back to the upstream.
  void release_cached();

  // Graph-private pools, for CUDA-graph capture (as PyTorch's graph pools). A captured graph
  // replays its kernels on the very addresses it was captured with, so that memory must stay
  // the graph's: while pool `id` is routed for `stream` (begin_private .. end_private),
  // allocations on that stream come from the pool's own segments, and a block of it returns
  // to it when freed, during the capture or after, never to the shared cache. Nothing asks the
  // upstream about events while any routing is active (a stream under capture allows no such
  // query), and record_stream does not apply to private blocks: a graph's work is all on its
  // capture stream. Replays then allocate nothing. One routing per stream at a time.
  using PrivateId = std::uint64_t;
  PrivateId create_private();
  // Throws ValueError for an unknown id or a stream already routed.
  void begin_private(PrivateId id, StreamKey stream);
  // Throws ValueError when `stream` is not routed.
  void end_private(StreamKey stream);
  // The graph is gone: the pool's free blocks join the shared cache, and its blocks still in
  // use join it when freed. Unknown ids are ignored (a second release).
  void release_private(PrivateId id);

  PoolStats stats() const;
  void reset_peak_stats();
  bool caching() const { return config_.caching; }
  const PoolUpstream& upstream() const { return *upstream_; }

  static std::size_t round_size(std::size_t bytes);
  // What the pool asks the upstream for when a rounded request finds no cached block.
  static std::size_t segment_size(std::size_t rounded);

 private:
  struct Block {
    char* ptr = nullptr;
    std::size_t size = 0;
    std::size_t requested = 0;
    StreamKey stream = nullptr;
    bool small = false;
    bool allocated = false;
    int pending_events = 0;
    PrivateId owner = 0;    // the graph-private pool of its segment; 0: shared
    Block* prev = nullptr;  // neighbours within the same segment
    Block* next = nullptr;
    std::vector<StreamKey> other_streams;
  };
  struct BlockLess {
    bool operator()(const Block* a, const Block* b) const;
  };
  using FreeSet = std::set<Block*, BlockLess>;

  struct Private {
    FreeSet small_free, large_free;
  };
  FreeSet& free_set(bool small, PrivateId owner = 0);
  Block* take_free_block(std::size_t size, StreamKey stream, PrivateId owner);
  Block* new_segment(std::size_t size, StreamKey stream, PrivateId owner);
  Block* split(Block* block, std::size_t size);
  void free_block(Block* block);
  void process_events(bool wait);
  void release_cached_locked();
  void release_private_locked(PrivateId id);
  void note_in_use(std::ptrdiff_t delta_bytes, std::ptrdiff_t delta_requested);
  std::string describe() const;

  std::unique_ptr<PoolUpstream> upstream_;
  PoolConfig config_;
  mutable std::mutex mutex_;
  FreeSet small_free_;
  FreeSet large_free_;
  std::unordered_map<void*, Block*> active_;
  std::unordered_map<void*, std::size_t> direct_;  // caching off: pointer -> size
  struct Pending {
    void* event;
    Block* block;
  };
  std::vector<Pending> pending_;
  std::unordered_map<PrivateId, Private> private_;
  std::unordered_map<StreamKey, PrivateId> routed_;  // streams under capture -> their pool
  PrivateId next_private_ = 1;
  PoolStats stats_;
};

}  // namespace gpudl
