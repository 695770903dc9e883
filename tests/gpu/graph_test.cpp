// CUDA graphs on a real GPU: a captured sequence of ops replays what eager execution computes,
// on the captured addresses, with no allocation from the pool; a capture that cannot hold its
// work fails cleanly and leaves the stream usable.
#include <gtest/gtest.h>

#include "gpudl/core/runtime/context.h"
#include "gpudl/core/runtime/cuda_graph.h"
#include "gpudl/core/runtime/ops.h"
#include "test_util.h"

namespace gpudl {
namespace {

using GpuGraph = testing::GpuTest;

TEST_F(GpuGraph, ReplaysTheCapturedOpsWithoutAllocating) {
  const Device d = Device::cuda(0);
  const std::vector<float> start = testing::random_vector(4096, 1);
  Tensor x = Tensor::from_vector(start, {4096}).to(d);
  Tensor y = Tensor::zeros({4096}, DType::kF32, d);
  // y += 2 x + x², through a temporary made inside the capture (the graph's own memory).
  const auto step = [&] {
    const Tensor square = ops::mul(x, x);
    ops::axpy(y, 2.0f, x);
    ops::add(y, y, square);
  };
  Tensor expected = Tensor::zeros({4096}, DType::kF32, d);
  {
    Tensor saved = y;
    y = expected;
    for (int i = 0; i < 3; ++i) step();
    y = saved;
  }
  MemoryPool& pool = Context::get(d).memory_pool();
  CudaGraph graph(d, step);
  // Capture records the work without running it.
  EXPECT_EQ(y.to_vector<float>(), std::vector<float>(4096, 0.0f));
  const PoolStats before = pool.stats();
  for (int i = 0; i < 3; ++i) graph.replay();
  const PoolStats after = pool.stats();
  EXPECT_EQ(y.to_vector<float>(), expected.to_vector<float>());
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.upstream_allocations, before.upstream_allocations);
  EXPECT_GT(before.private_bytes, 0u);
}

TEST_F(GpuGraph, AnUncapturableStepFailsCleanly) {
  const Device d = Device::cuda(0);
  Tensor x = Tensor::full({16}, 3.0, DType::kF32, d);
  const std::size_t reserved = Context::get(d).memory_pool().stats().private_bytes;
  // Reading a value back to the host synchronises the stream, which a capture cannot hold.
  EXPECT_THROW(CudaGraph(d, [&] { (void)ops::mul(x, x).to_vector<float>(); }), Error);
  EXPECT_EQ(Context::get(d).memory_pool().stats().private_bytes, reserved);
  // And the stream still runs eager work.
  EXPECT_EQ(ops::mul(x, x).to_vector<float>(), std::vector<float>(16, 9.0f));
}

}  // namespace
}  // namespace gpudl
