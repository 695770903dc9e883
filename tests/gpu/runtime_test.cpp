// The CUDA runtime layer on a real GPU: device tensors, streams and events, the device and
// pinned pools with real events, out-of-memory recovery, library handles.
#include <gtest/gtest.h>

#include "gpudl/core/detail/cuda_api.h"
#include "test_util.h"

namespace gpudl {
namespace {

using GpuRuntime = testing::GpuTest;

TEST_F(GpuRuntime, DescribesTheDeviceAndLibraries) {
  const Device d = Device::cuda(0);
  EXPECT_FALSE(d.name().empty());
  EXPECT_EQ(Device::best(), d);
  EXPECT_EQ(Device::parse("cuda:0"), d);
  const std::string v = cuda_api::versions();
  EXPECT_NE(v.find("cuDNN 9."), std::string::npos) << v;
  std::printf("%s (sm_%d): %s\n", d.name().c_str(), cuda_api::compute_capability(0), v.c_str());
}

// What the policy allows on this GPU: tf32 and bf16 from compute capability 8.0, fp16 from 6.0;
// the default is bf16 where it can be. A precision the GPU lacks is a one-line DeviceError
// naming the precision, the device and its capability.
TEST_F(GpuRuntime, PrecisionPolicyFollowsTheComputeCapability) {
  const Device d = Device::cuda(0);
  const int cc = cuda_api::compute_capability(0);
  EXPECT_EQ(default_precision(d), cc >= 80 ? Precision::kBF16 : Precision::kF32);
  for (Precision p : {Precision::kF32, Precision::kTF32, Precision::kBF16, Precision::kF16}) {
    const int need = p == Precision::kF32 ? 0 : p == Precision::kF16 ? 60 : 80;
    if (cc >= need) {
      EXPECT_NO_THROW(check_precision(p, d)) << precision_name(p);
      continue;
    }
    try {
      check_precision(p, d);
      ADD_FAILURE() << precision_name(p) << " accepted on sm_" << cc;
    } catch (const DeviceError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(std::string("precision ") + precision_name(p) + " needs"), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

TEST_F(GpuRuntime, TensorsRoundTripThroughTheDevice) {
  const auto v = testing::random_vector(12345, 30);
  Tensor g = Tensor::from_vector(v, {12345}, Device::cuda(0));
  EXPECT_TRUE(g.device().is_cuda());
  EXPECT_EQ(g.to_vector<float>(), v);
  Tensor back = g.to(Device::cpu());
  EXPECT_EQ(back.to_vector<float>(), v);
  Tensor view = g.slice(100, 200);
  EXPECT_EQ(view.to_vector<float>(), std::vector<float>(v.begin() + 100, v.begin() + 200));
  Tensor c = g.clone();
  g.fill_(0.0);
  EXPECT_EQ(c.to_vector<float>(), v);
  EXPECT_NE(g.str().find("device=cuda:0"), std::string::npos);
}

TEST_F(GpuRuntime, AsyncCopiesFromPinnedMemoryAreOrderedByEvents) {
  const Device d = Device::cuda(0);
  Context& ctx = Context::get(d);
  const std::int64_t n = 1 << 22;
  const auto v = testing::random_vector(static_cast<std::size_t>(n), 31);
  Tensor pinned = Tensor::empty_pinned({n});
  ASSERT_TRUE(pinned.is_pinned());
  std::copy(v.begin(), v.end(), pinned.data<float>());
  Tensor dev = Tensor::empty({n}, DType::kF32, d);
  dev.copy_from_async(pinned, ctx.copy_stream());
  Event copied(d);
  copied.record(ctx.copy_stream());
  ctx.compute_stream().wait(copied);
  ops::scale(dev, dev, 2.0f);  // on the compute stream, after the copy
  Tensor out = Tensor::empty_pinned({n});
  out.copy_from_async(dev, ctx.compute_stream());
  ctx.compute_stream().synchronize();
  const float* o = out.data<float>();
  for (std::int64_t i = 0; i < n; i += 997) ASSERT_EQ(o[i], 2.0f * v[static_cast<std::size_t>(i)]) << i;
}

TEST_F(GpuRuntime, DevicePoolWaitsForOtherStreamsBeforeReuse) {
  const Device d = Device::cuda(0);
  Context& ctx = Context::get(d);
  MemoryPool& pool = ctx.memory_pool();
  if (!pool.caching()) GTEST_SKIP() << "caching is off (GPUDL_NO_CACHING)";
  void* p = pool.allocate(1 << 20, ctx.compute_stream().handle());
  pool.record_stream(p, ctx.copy_stream().handle());
  pool.deallocate(p);
  ctx.copy_stream().synchronize();  // the copy stream is past the free
  void* q = pool.allocate(1 << 20, ctx.compute_stream().handle());
  EXPECT_EQ(q, p);
  EXPECT_EQ(pool.stats().pending_blocks, 0u);
  pool.deallocate(q);
}

TEST_F(GpuRuntime, OutOfMemoryIsAnExceptionAndThePoolRecovers) {
  const Device d = Device::cuda(0);
  MemoryPool& pool = Context::get(d).memory_pool();
  const PoolStats before = pool.stats();
  const std::int64_t too_many = static_cast<std::int64_t>(cuda_api::total_memory(0) / 4) * 2;  // 2x the card, in f32
  try {
    Tensor::empty({too_many}, DType::kF32, d);
    FAIL() << "expected OutOfMemoryError";
  } catch (const OutOfMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0 device memory"), std::string::npos) << e.what();
  }
  Tensor ok = Tensor::full({1 << 20}, 1.0, DType::kF32, d);
  EXPECT_EQ(ops::sum(ok, 0).to_vector<float>()[0], static_cast<float>(1 << 20));
  if (pool.caching()) {
    EXPECT_GE(pool.stats().oom_retries, 1u);
  }
  ok = Tensor();
  // The failed request left nothing behind: what is handed out is what was before it.
  const PoolStats after = pool.stats();
  EXPECT_EQ(after.in_use_bytes, before.in_use_bytes);
  EXPECT_EQ(after.active_blocks, before.active_blocks);
}

TEST_F(GpuRuntime, LibraryHandlesAreCreatedOnce) {
  Context& ctx = Context::get(Device::cuda(0));
  void* blas = ctx.cublas();
  EXPECT_NE(blas, nullptr);
  EXPECT_EQ(ctx.cublas(), blas);
  EXPECT_NE(ctx.cudnn(), nullptr);
  void* w = ctx.workspace(1 << 16);
  EXPECT_NE(w, nullptr);
  EXPECT_EQ(ctx.workspace(1 << 10), w);  // only grows
}

TEST_F(GpuRuntime, EventsTimeWorkOnAStream) {
  const Device d = Device::cuda(0);
  Context& ctx = Context::get(d);
  Tensor t = Tensor::empty({1 << 24}, DType::kF32, d);
  Event start(d, true), stop(d, true);
  start.record(ctx.compute_stream());
  for (int i = 0; i < 10; ++i) t.fill_(static_cast<double>(i));
  stop.record(ctx.compute_stream());
  stop.synchronize();
  EXPECT_TRUE(stop.query());
  EXPECT_GT(stop.elapsed_ms(start), 0.0f);
}

TEST_F(GpuRuntime, MixingDevicesIsAClearError) {
  Tensor g = Tensor::zeros({4}, DType::kF32, Device::cuda(0));
  Tensor c = Tensor::zeros({4});
  try {
    ops::add(g, c);
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    EXPECT_STREQ(e.what(), "add: tensors on cuda:0 and cpu; move one with to()");
  }
}

}  // namespace
}  // namespace gpudl
