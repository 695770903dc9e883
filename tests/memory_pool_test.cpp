// MemoryPool behaviour through a fake upstream: size classes, split/merge, streams, OOM retry,
// graph-private pools.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <thread>

#include "gpudl/core/runtime/memory_pool.h"
#include "gpudl/kernels/error.h"

namespace gpudl {
namespace {

constexpr std::size_t kKiB = 1024, kMiB = 1024 * 1024;

// Host memory with a byte budget, a log of calls, and streams whose progress the test
// controls: an event recorded on a stream is done once the test completes that stream.
struct FakeState {
  std::size_t budget = SIZE_MAX;
  std::size_t held = 0;
  int allocations = 0, deallocations = 0, failures = 0, queries = 0;
  std::map<StreamKey, int> recorded, completed;
};

struct FakeEvent {
  StreamKey stream;
  int generation;
};

class FakeUpstream final : public PoolUpstream {
 public:
  explicit FakeUpstream(std::shared_ptr<FakeState> state) : s_(std::move(state)) {}
  void* allocate(std::size_t bytes) override {
    if (s_->held + bytes > s_->budget) {
      ++s_->failures;
      return nullptr;
    }
    s_->held += bytes;
    ++s_->allocations;
    // aligned_alloc wants a multiple of the alignment; with caching off the pool passes the
    // request's own size through.
    const std::size_t rounded = (bytes + MemoryPool::kAlignment - 1) / MemoryPool::kAlignment * MemoryPool::kAlignment;
    return std::aligned_alloc(MemoryPool::kAlignment, rounded);
  }
  void deallocate(void* ptr, std::size_t bytes) noexcept override {
    s_->held -= bytes;
    ++s_->deallocations;
    std::free(ptr);
  }
  void* record_event(StreamKey stream) override { return new FakeEvent{stream, ++s_->recorded[stream]}; }
  bool event_done(void* e) override {
    ++s_->queries;
    auto* ev = static_cast<FakeEvent*>(e);
    return s_->completed[ev->stream] >= ev->generation;
  }
  void wait_event(void* e) override {
    auto* ev = static_cast<FakeEvent*>(e);
    s_->completed[ev->stream] = std::max(s_->completed[ev->stream], ev->generation);
  }
  void release_event(void* e) noexcept override { delete static_cast<FakeEvent*>(e); }
  std::string name() const override { return "fake memory"; }

 private:
  std::shared_ptr<FakeState> s_;
};

StreamKey stream(int i) { return reinterpret_cast<StreamKey>(static_cast<std::uintptr_t>(0x1000 * i)); }

class MemoryPoolTest : public ::testing::Test {
 protected:
  MemoryPool& pool(bool caching = true) {
    if (!pool_) pool_ = std::make_unique<MemoryPool>(std::make_unique<FakeUpstream>(state_), PoolConfig{caching});
    return *pool_;
  }
  void complete(StreamKey s) { state_->completed[s] = state_->recorded[s]; }

  std::shared_ptr<FakeState> state_ = std::make_shared<FakeState>();
  std::unique_ptr<MemoryPool> pool_;
};

TEST_F(MemoryPoolTest, RoundsRequestsToSizeClasses) {
  EXPECT_EQ(MemoryPool::round_size(1), 512u);
  EXPECT_EQ(MemoryPool::round_size(512), 512u);
  EXPECT_EQ(MemoryPool::round_size(513), 1024u);
  EXPECT_EQ(MemoryPool::segment_size(512), 2 * kMiB);    // small blocks share 2 MiB segments
  EXPECT_EQ(MemoryPool::segment_size(kMiB), 2 * kMiB);
  EXPECT_EQ(MemoryPool::segment_size(kMiB + 512), 20 * kMiB);  // 1-10 MiB share 20 MiB
  EXPECT_EQ(MemoryPool::segment_size(11 * kMiB + 512), 12 * kMiB);
}

TEST_F(MemoryPoolTest, ZeroBytesGiveNullAndNullFreeIsIgnored) {
  EXPECT_EQ(pool().allocate(0, stream(1)), nullptr);
  EXPECT_NO_THROW(pool().deallocate(nullptr));
  EXPECT_EQ(state_->allocations, 0);
}

TEST_F(MemoryPoolTest, ReusesAFreedBlockOnTheSameStream) {
  void* p = pool().allocate(1000, stream(1));
  pool().deallocate(p);
  void* q = pool().allocate(900, stream(1));
  EXPECT_EQ(p, q);
  const PoolStats s = pool().stats();
  EXPECT_EQ(s.cache_misses, 1u);
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.upstream_allocations, 1u);
  EXPECT_EQ(state_->allocations, 1);
  pool().deallocate(q);
}

TEST_F(MemoryPoolTest, SplitsSmallSegmentsAndAlignsEveryBlock) {
  char* a = static_cast<char*>(pool().allocate(100, stream(1)));
  char* b = static_cast<char*>(pool().allocate(600, stream(1)));
  char* c = static_cast<char*>(pool().allocate(512, stream(1)));
  EXPECT_EQ(b, a + 512);
  EXPECT_EQ(c, b + 1024);
  for (char* p : {a, b, c}) EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % MemoryPool::kAlignment, 0u);
  EXPECT_EQ(pool().stats().segments, 1u);
  EXPECT_EQ(pool().stats().reserved_bytes, 2 * kMiB);
  for (char* p : {a, b, c}) pool().deallocate(p);
}

TEST_F(MemoryPoolTest, KeepsSmallAndLargeBlocksApart) {
  void* large = pool().allocate(4 * kMiB, stream(1));
  pool().deallocate(large);  // 20 MiB cached in the large pool
  void* small = pool().allocate(4 * kKiB, stream(1));
  EXPECT_EQ(state_->allocations, 2);  // a new 2 MiB segment, not a piece of the large one
  EXPECT_EQ(pool().stats().reserved_bytes, 22 * kMiB);
  void* large_again = pool().allocate(3 * kMiB, stream(1));
  EXPECT_EQ(large_again, large);
  pool().deallocate(small);
  pool().deallocate(large_again);
}

TEST_F(MemoryPoolTest, LargeSegmentsSplitOnlyForRemaindersOverOneMiB) {
  char* a = static_cast<char*>(pool().allocate(3 * kMiB, stream(1)));
  char* b = static_cast<char*>(pool().allocate(3 * kMiB, stream(1)));
  EXPECT_EQ(b, a + 3 * kMiB);  // both carved from one 20 MiB segment
  EXPECT_EQ(state_->allocations, 1);
  // 14 MiB remain; a 13.5 MiB request leaves 0.5 MiB, too little to split off.
  void* c = pool().allocate(13 * kMiB + kMiB / 2, stream(1));
  EXPECT_EQ(pool().stats().in_use_bytes, 20 * kMiB);
  EXPECT_EQ(pool().stats().cached_blocks, 0u);
  for (void* p : {static_cast<void*>(a), static_cast<void*>(b), c}) pool().deallocate(p);
}

TEST_F(MemoryPoolTest, MergesNeighboursOnFreeAndReleasesWholeSegments) {
  void* a = pool().allocate(512, stream(1));
  void* b = pool().allocate(512, stream(1));
  void* c = pool().allocate(512, stream(1));
  pool().deallocate(a);
  pool().deallocate(c);  // merges with the free tail of the segment
  EXPECT_EQ(pool().stats().cached_blocks, 2u);
  pool().release_cached();  // nothing is a whole segment while b is in use
  EXPECT_EQ(state_->deallocations, 0);
  pool().deallocate(b);  // merges with both neighbours: one block, the whole segment
  EXPECT_EQ(pool().stats().cached_blocks, 1u);
  pool().release_cached();
  EXPECT_EQ(state_->deallocations, 1);
  EXPECT_EQ(pool().stats().reserved_bytes, 0u);
  EXPECT_EQ(pool().stats().segments, 0u);
  EXPECT_EQ(state_->held, 0u);
}

TEST_F(MemoryPoolTest, PicksTheBestFittingCachedBlock) {
  void* a = pool().allocate(2 * kKiB, stream(1));
  void* x = pool().allocate(512, stream(1));
  void* b = pool().allocate(8 * kKiB, stream(1));
  void* y = pool().allocate(512, stream(1));
  pool().deallocate(b);
  pool().deallocate(a);
  EXPECT_EQ(pool().allocate(1536, stream(1)), a);  // 2 KiB fits better than 8 KiB
  EXPECT_EQ(pool().allocate(6 * kKiB, stream(1)), b);
  for (void* p : {a, b, x, y}) pool().deallocate(p);
}

TEST_F(MemoryPoolTest, DoesNotHandABlockToAnotherStream) {
  void* p = pool().allocate(4096, stream(1));
  pool().deallocate(p);
  void* q = pool().allocate(4096, stream(2));
  EXPECT_NE(p, q);
  EXPECT_EQ(state_->allocations, 2);
  void* r = pool().allocate(4096, stream(1));
  EXPECT_EQ(r, p);
  pool().deallocate(q);
  pool().deallocate(r);
}

TEST_F(MemoryPoolTest, RecordStreamDelaysReuseUntilTheOtherStreamIsPast) {
  void* p = pool().allocate(4096, stream(1));
  pool().record_stream(p, stream(2));
  pool().deallocate(p);
  EXPECT_EQ(pool().stats().pending_blocks, 1u);
  void* q = pool().allocate(4096, stream(1));
  EXPECT_NE(q, p);  // stream 2 may still be reading p
  pool().deallocate(q);
  complete(stream(2));
  void* r = pool().allocate(4096, stream(1));
  EXPECT_EQ(r, p);
  EXPECT_EQ(pool().stats().pending_blocks, 0u);
  pool().deallocate(r);
}

TEST_F(MemoryPoolTest, RecordStreamOnTheOwningStreamIsANoOp) {
  void* p = pool().allocate(4096, stream(1));
  pool().record_stream(p, stream(1));
  pool().deallocate(p);
  EXPECT_EQ(pool().stats().pending_blocks, 0u);
  EXPECT_EQ(pool().allocate(4096, stream(1)), p);
  pool().deallocate(p);
}

TEST_F(MemoryPoolTest, ReleasesTheCacheAndRetriesOnceWhenTheUpstreamIsFull) {
  state_->budget = 40 * kMiB;
  void* a = pool().allocate(3 * kMiB, stream(1));  // 20 MiB segment
  pool().deallocate(a);
  void* b = pool().allocate(25 * kMiB, stream(1));  // 26 MiB: fits only once the 20 are returned
  ASSERT_NE(b, nullptr);
  const PoolStats s = pool().stats();
  EXPECT_EQ(s.oom_retries, 1u);
  EXPECT_EQ(s.upstream_frees, 1u);
  EXPECT_EQ(s.reserved_bytes, 26 * kMiB);
  EXPECT_EQ(state_->failures, 1);
  pool().deallocate(b);
}

TEST_F(MemoryPoolTest, RetryWaitsForPendingCrossStreamFrees) {
  state_->budget = 40 * kMiB;
  void* a = pool().allocate(3 * kMiB, stream(1));
  pool().record_stream(a, stream(2));
  pool().deallocate(a);  // pending on stream 2
  void* b = pool().allocate(25 * kMiB, stream(1));
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(pool().stats().pending_blocks, 0u);
  pool().deallocate(b);
}

TEST_F(MemoryPoolTest, ThrowsOutOfMemoryNamingTheRequestWhenRetryFails) {
  state_->budget = 10 * kMiB;
  void* a = pool().allocate(512, stream(1));
  try {
    pool().allocate(64 * kMiB, stream(1));
    FAIL() << "expected OutOfMemoryError";
  } catch (const OutOfMemoryError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fake memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("64.00 MiB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("in use 512 B"), std::string::npos) << msg;
  }
  // The pool is still usable, and memory in use was never returned.
  void* b = pool().allocate(512, stream(1));
  EXPECT_NE(b, nullptr);
  EXPECT_NE(b, a);
  pool().deallocate(a);
  pool().deallocate(b);
  // Nothing leaked: once the cache is released, the pool and the upstream are back where a
  // pool that never failed would be.
  pool().release_cached();
  const PoolStats s = pool().stats();
  EXPECT_EQ(s.in_use_bytes, 0u);
  EXPECT_EQ(s.requested_bytes, 0u);
  EXPECT_EQ(s.active_blocks, 0u);
  EXPECT_EQ(s.reserved_bytes, 0u);
  EXPECT_EQ(s.segments, 0u);
  EXPECT_EQ(s.upstream_allocations, s.upstream_frees);
  EXPECT_GE(s.oom_retries, 1u);
  EXPECT_EQ(state_->held, 0u);
}

TEST_F(MemoryPoolTest, KeepsStatistics) {
  void* a = pool().allocate(1000, stream(1));
  void* b = pool().allocate(3000, stream(1));
  PoolStats s = pool().stats();
  EXPECT_EQ(s.in_use_bytes, 1024u + 3072u);
  EXPECT_EQ(s.requested_bytes, 4000u);
  EXPECT_EQ(s.active_blocks, 2u);
  EXPECT_EQ(s.allocations, 2u);
  pool().deallocate(b);
  s = pool().stats();
  EXPECT_EQ(s.in_use_bytes, 1024u);
  EXPECT_EQ(s.peak_in_use_bytes, 4096u);
  EXPECT_EQ(s.frees, 1u);
  EXPECT_EQ(s.reserved_bytes, 2 * kMiB);
  pool().reset_peak_stats();
  EXPECT_EQ(pool().stats().peak_in_use_bytes, 1024u);
  pool().deallocate(a);
}

TEST_F(MemoryPoolTest, CachingOffGoesStraightToTheUpstream) {
  MemoryPool& p = pool(/*caching=*/false);
  void* a = p.allocate(1000, stream(1));
  p.deallocate(a);
  void* b = p.allocate(1000, stream(1));
  p.deallocate(b);
  EXPECT_EQ(state_->allocations, 2);
  EXPECT_EQ(state_->deallocations, 2);
  EXPECT_EQ(state_->held, 0u);
  EXPECT_EQ(p.stats().cache_hits, 0u);
  EXPECT_EQ(p.stats().reserved_bytes, 0u);
}

TEST_F(MemoryPoolTest, EnvironmentVariableTurnsCachingOff) {
  ::setenv("GPUDL_NO_CACHING", "1", 1);
  EXPECT_FALSE(PoolConfig::from_env().caching);
  ::setenv("GPUDL_NO_CACHING", "0", 1);
  EXPECT_TRUE(PoolConfig::from_env().caching);
  ::unsetenv("GPUDL_NO_CACHING");
  EXPECT_TRUE(PoolConfig::from_env().caching);
}

TEST_F(MemoryPoolTest, RejectsPointersItDidNotHandOut) {
  int local = 0;
  EXPECT_THROW(pool().deallocate(&local), ValueError);
  EXPECT_THROW(pool().record_stream(&local, stream(2)), ValueError);
  void* p = pool().allocate(512, stream(1));
  pool().deallocate(p);
  EXPECT_THROW(pool().deallocate(p), ValueError);  // double free
}

TEST_F(MemoryPoolTest, DestructorReturnsEverythingCached) {
  void* a = pool().allocate(512, stream(1));
  void* b = pool().allocate(5 * kMiB, stream(2));
  pool().deallocate(a);
  pool().deallocate(b);
  pool_.reset();
  EXPECT_EQ(state_->held, 0u);
  EXPECT_EQ(state_->deallocations, 2);
}

TEST_F(MemoryPoolTest, SurvivesConcurrentUse) {
  MemoryPool& p = pool();
  auto worker = [&p](int id) {
    std::vector<void*> live;
    for (int i = 0; i < 2000; ++i) {
      live.push_back(p.allocate(static_cast<std::size_t>(512 * (1 + (i * 7 + id) % 9)), stream(id)));
      if (live.size() > 16) {
        p.deallocate(live.front());
        live.erase(live.begin());
      }
    }
    for (void* q : live) p.deallocate(q);
  };
  std::thread t1(worker, 1), t2(worker, 2);
  t1.join();
  t2.join();
  EXPECT_EQ(p.stats().in_use_bytes, 0u);
  EXPECT_EQ(p.stats().active_blocks, 0u);
}

TEST(HostUpstream, AllocatesAlignedMemoryAndCompletesEventsAtOnce) {
  auto up = make_host_upstream();
  void* p = up->allocate(1000);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % MemoryPool::kAlignment, 0u);
  up->deallocate(p, 1000);
  // Segments of 2 MiB and more (every pool segment) start on a 2 MiB page boundary, so that
  // transparent huge pages can back them.
  const std::size_t big = (3u << 20) + 512;
  void* q = up->allocate(big);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(q) % (2u << 20), 0u);
  static_cast<char*>(q)[big - 1] = 1;  // the whole block is usable
  up->deallocate(q, big);
  void* e = up->record_event(nullptr);
  EXPECT_TRUE(up->event_done(e));
}

// A graph-private pool: a capture's allocations come from its own segments, even with a
// fitting block in the shared cache, and its blocks come back to it when freed, so the next
// capture into the same pool finds them and allocates nothing from the upstream.
TEST_F(MemoryPoolTest, PrivatePoolKeepsACapturesMemoryToItself) {
  MemoryPool& p = pool();
  void* shared = p.allocate(4 * kKiB, stream(1));
  p.deallocate(shared);  // a cached 4 KiB block on stream 1
  const MemoryPool::PrivateId graph = p.create_private();
  p.begin_private(graph, stream(1));
  void* a = p.allocate(4 * kKiB, stream(1));
  void* b = p.allocate(8 * kKiB, stream(1));
  EXPECT_NE(a, shared);
  EXPECT_EQ(p.stats().private_bytes, MemoryPool::kSmallSegment);
  // Another stream is not routed: the shared cache serves it.
  void* other = p.allocate(4 * kKiB, stream(2));
  p.deallocate(a);  // freed during the capture: back to the graph's pool
  p.end_private(stream(1));
  p.deallocate(b);  // freed after it: the graph's too
  void* after = p.allocate(8 * kKiB, stream(1));
  EXPECT_NE(after, b) << "a graph's block went to the shared cache";
  p.deallocate(after);
  const int upstream = state_->allocations;
  p.begin_private(graph, stream(1));
  void* a2 = p.allocate(4 * kKiB, stream(1));
  void* b2 = p.allocate(8 * kKiB, stream(1));
  p.end_private(stream(1));
  EXPECT_EQ(state_->allocations, upstream) << "a second capture into the same pool allocated";
  EXPECT_EQ(a2, a);
  EXPECT_EQ(static_cast<char*>(b2), static_cast<char*>(a2) + 4 * kKiB);
  p.deallocate(other);
  p.deallocate(a2);
  p.deallocate(b2);
}

// While any stream is under capture the pool never asks about events (CUDA forbids it), and
// record_stream leaves private blocks alone.
TEST_F(MemoryPoolTest, PrivatePoolQueriesNoEventsDuringACapture) {
  MemoryPool& p = pool();
  void* x = p.allocate(4 * kKiB, stream(1));
  p.record_stream(x, stream(2));
  p.deallocate(x);  // pending on stream 2's event
  const MemoryPool::PrivateId graph = p.create_private();
  p.begin_private(graph, stream(3));
  const int queries = state_->queries, recorded = state_->recorded[stream(4)];
  void* y = p.allocate(4 * kKiB, stream(3));
  void* z = p.allocate(4 * kKiB, stream(5));
  p.record_stream(y, stream(4));
  p.deallocate(y);
  p.deallocate(z);
  EXPECT_EQ(state_->queries, queries);
  EXPECT_EQ(state_->recorded[stream(4)], recorded);
  p.end_private(stream(3));
  complete(stream(2));
  p.release_cached();  // outside the capture the pending block is processed again
  EXPECT_GT(state_->queries, queries);
  EXPECT_EQ(p.stats().pending_blocks, 0u);
}

// Released, a graph's memory joins the shared cache: free blocks at once, blocks still in use
// when freed; then release_cached can give its segments back.
TEST_F(MemoryPoolTest, ReleasedPrivatePoolJoinsTheSharedCache) {
  MemoryPool& p = pool();
  const MemoryPool::PrivateId graph = p.create_private();
  p.begin_private(graph, stream(1));
  void* kept = p.allocate(4 * kKiB, stream(1));
  void* freed = p.allocate(4 * kKiB, stream(1));
  p.end_private(stream(1));
  p.deallocate(freed);
  p.release_cached();
  EXPECT_EQ(state_->deallocations, 0) << "a live graph's segment was given back";
  p.release_private(graph);
  p.release_private(graph);  // a second release is harmless
  EXPECT_EQ(p.stats().private_bytes, 0u);
  EXPECT_EQ(p.allocate(4 * kKiB, stream(1)), freed) << "the released block is not in the shared cache";
  p.deallocate(freed);
  p.deallocate(kept);
  p.release_cached();
  EXPECT_EQ(state_->deallocations, 1);
  EXPECT_EQ(p.stats().reserved_bytes, 0u);
}

TEST_F(MemoryPoolTest, PrivatePoolMisuseIsNamed) {
  MemoryPool& p = pool();
  EXPECT_THROW(p.begin_private(42, stream(1)), ValueError);
  const MemoryPool::PrivateId graph = p.create_private();
  p.begin_private(graph, stream(1));
  EXPECT_THROW(p.begin_private(p.create_private(), stream(1)), ValueError);
  p.end_private(stream(1));
  EXPECT_THROW(p.end_private(stream(1)), ValueError);
  // Out of memory during a capture: the error says so at once (no wait on events).
  state_->budget = state_->held;
  p.begin_private(graph, stream(1));
  try {
    p.allocate(4 * kKiB, stream(1));
    ADD_FAILURE() << "no error";
  } catch (const OutOfMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("during a graph capture"), std::string::npos) << e.what();
  }
  p.end_private(stream(1));
}

}  // namespace
}  // namespace gpudl
