// One process driving two GPUs: the current device left alone by ops, pools, copies and frees.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "gpudl/core/detail/cuda_api.h"
#include "test_util.h"

namespace gpudl {
namespace {

// FP32 sums of 64 products in a different order from the CPU's (no TF32: allow_tf32 is off).
constexpr double kMatmulTolerance = 1e-5;

using SingleGpu = testing::GpuTest;

// Without a second GPU these stay skipped, and so not yet run, wherever they are built.
class TwoGpus : public ::testing::Test {
 protected:
  void SetUp() override {
    const int count = Device::cuda_device_count();
    if (count < 2) {
      GTEST_SKIP() << "needs two CUDA devices, found " << count << "; not yet run on two";
    }
    cuda_api::set_device(0);
  }
  void TearDown() override {
    if (Device::cuda_device_count() >= 2) cuda_api::set_device(0);
  }
};

TEST_F(SingleGpu, OpsLeaveTheCurrentDeviceAsTheyFoundIt) {
  const Device d = Device::cuda(0);
  cuda_api::set_device(0);
  const auto v = testing::random_vector(4096, 71);
  Tensor t = Tensor::from_vector(v, {64, 64}, d);
  ops::scale(t, t, 2.0f);
  Tensor p = ops::matmul(t, t);
  Tensor s = ops::sum(p, 0);
  EXPECT_EQ(cuda_api::current_device(), 0);
  EXPECT_EQ(s.to_vector<float>().size(), 64u);
  EXPECT_EQ(cuda_api::current_device(), 0);
}

TEST_F(TwoGpus, AllocatesAndFreesOnDeviceOneWhileDeviceZeroIsCurrent) {
  const Device d1 = Device::cuda(1);
  const std::size_t before0 = Context::get(Device::cuda(0)).memory_pool().stats().in_use_bytes;
  MemoryPool& pool1 = Context::get(d1).memory_pool();
  const std::size_t before1 = pool1.stats().in_use_bytes;
  {
    Tensor t = Tensor::full({1 << 20}, 3.0, DType::kF32, d1);
    EXPECT_EQ(cuda_api::current_device(), 0);
    EXPECT_GE(pool1.stats().in_use_bytes, before1 + (std::size_t{4} << 20));
    EXPECT_EQ(Context::get(Device::cuda(0)).memory_pool().stats().in_use_bytes, before0);
    const auto host = t.to_vector<float>();
    EXPECT_EQ(host.front(), 3.0f);
    EXPECT_EQ(host.back(), 3.0f);
  }
  EXPECT_EQ(cuda_api::current_device(), 0);
  EXPECT_EQ(pool1.stats().in_use_bytes, before1);
}

TEST_F(TwoGpus, CopiesBetweenDevicesRoundTrip) {
  const Device d0 = Device::cuda(0), d1 = Device::cuda(1);
  const std::int64_t n = 1 << 21;
  const auto v = testing::random_vector(static_cast<std::size_t>(n), 72);
  Tensor src = Tensor::from_vector(v, {n}, d0);
  Tensor there = src.to(d1);
  Tensor back = there.to(d0);
  EXPECT_EQ(cuda_api::current_device(), 0);
  EXPECT_EQ(back.to_vector<float>(), v);

  // No host synchronisation inside the copies: a kernel just enqueued on the source's device
  // must come before the copy, and one enqueued after it on either side must come after.
  Tensor doubled = Tensor::empty({n}, DType::kF32, d1);
  ops::scale(src, src, 2.0f);
  doubled.copy_from(src);
  src.fill_(-1.0);  // overwriting the source must not reach the copy already enqueued
  ops::scale(doubled, doubled, 0.5f);
  EXPECT_EQ(doubled.to_vector<float>(), v);
  EXPECT_EQ(src.to_vector<float>(), std::vector<float>(static_cast<std::size_t>(n), -1.0f));

  // The asynchronous road, on the destination's copy stream.
  Tensor async = Tensor::empty({n}, DType::kF32, d0);
  async.copy_from_async(there, Context::get(d0).copy_stream());
  EXPECT_EQ(async.to_vector<float>(), v);
  EXPECT_EQ(cuda_api::current_device(), 0);
}

TEST_F(TwoGpus, PoolFreesOnDeviceOneFromAThreadOnDeviceZeroDoNotThrow) {
  const Device d1 = Device::cuda(1);
  Context& ctx1 = Context::get(d1);
  MemoryPool& pool1 = ctx1.memory_pool();
  const std::shared_ptr<MemoryPool> pinned_pool = Context::pinned_pool();
  const PoolStats start1 = pool1.stats();
  const PoolStats start_pinned = pinned_pool->stats();
  const std::int64_t n = 1 << 18;
  const auto v = testing::random_vector(static_cast<std::size_t>(n), 73);

  // Blocks used on a second stream of device 1 need an event on device 1 when freed, and so do
  // pinned buffers read by device 1's streams; the thread freeing them has device 0 current.
  Tensor dev = Tensor::empty({n}, DType::kF32, d1);
  Tensor pinned = Tensor::empty_pinned({n});
  std::copy(v.begin(), v.end(), pinned.data<float>());
  dev.copy_from_async(pinned, ctx1.copy_stream());
  void* raw = pool1.allocate(1 << 20, ctx1.compute_stream().handle());
  pool1.record_stream(raw, ctx1.copy_stream().handle());

  std::atomic<int> device_after{-1};
  std::thread freer([&] {
    cuda_api::set_device(0);
    EXPECT_NO_THROW(pool1.deallocate(raw));
    EXPECT_EQ(dev.to_vector<float>(), v);
    dev = Tensor();     // a failed free only warns here, so the statistics below tell
    pinned = Tensor();
    device_after = cuda_api::current_device();
  });
  freer.join();
  EXPECT_EQ(device_after.load(), 0);

  // Everything handed out is back, and once the copy stream is past the frees no block is left
  // waiting: the events were recorded on device 1 and complete.
  ctx1.copy_stream().synchronize();
  pool1.deallocate(pool1.allocate(512, ctx1.compute_stream().handle()));
  pinned_pool->deallocate(pinned_pool->allocate(512, nullptr));
  const PoolStats end1 = pool1.stats();
  EXPECT_EQ(end1.active_blocks, start1.active_blocks);
  EXPECT_EQ(end1.in_use_bytes, start1.in_use_bytes);
  EXPECT_EQ(end1.pending_blocks, 0u);
  const PoolStats end_pinned = pinned_pool->stats();
  EXPECT_EQ(end_pinned.active_blocks, start_pinned.active_blocks);
  EXPECT_EQ(end_pinned.pending_blocks, 0u);
}

TEST_F(TwoGpus, OpsOnOneDeviceLeaveTheOtherCurrent) {
  const std::int64_t m = 64;
  const auto av = testing::random_vector(static_cast<std::size_t>(m * m), 74);
  const auto bv = testing::random_vector(static_cast<std::size_t>(m * m), 75);
  const Tensor a_cpu = Tensor::from_vector(av, {m, m});
  const Tensor b_cpu = Tensor::from_vector(bv, {m, m});

  for (int current : {0, 1}) {
    cuda_api::set_device(current);
    const Device other = Device::cuda(1 - current);
    Tensor a = a_cpu.to(other);
    EXPECT_EQ(cuda_api::current_device(), current);
    Tensor b = b_cpu.to(other);
    Tensor p = ops::matmul(a, b);  // the first one also creates the device's cuBLAS handle
    EXPECT_EQ(cuda_api::current_device(), current);
    ops::scale(p, p, 1.0f);
    const Tensor h = ops::add(p, p).cast(DType::kBF16);
    EXPECT_EQ(cuda_api::current_device(), current);
    const auto got = p.to_vector<float>();
    const auto want = ops::matmul(a_cpu, b_cpu).to_vector<float>();
    EXPECT_LT(testing::relative_error(got, want), kMatmulTolerance);
    EXPECT_EQ(h.device(), other);
    Stream extra = Stream::create(other);
    Event marker(other);
    marker.record(extra);
    EXPECT_EQ(cuda_api::current_device(), current);
  }
}

TEST_F(TwoGpus, EveryThreadFindsTheSameContexts) {
  std::vector<Context*> seen(16, nullptr);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    threads.emplace_back([&seen, i] { seen[i] = &Context::get(Device::cuda(static_cast<int>(i % 2))); });
  }
  for (std::thread& t : threads) t.join();
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i], &Context::get(Device::cuda(static_cast<int>(i % 2)))) << i;
    EXPECT_EQ(seen[i]->device(), Device::cuda(static_cast<int>(i % 2)));
  }
  EXPECT_NE(&Context::get(Device::cuda(0)), &Context::get(Device::cuda(1)));
}

}  // namespace
}  // namespace gpudl
