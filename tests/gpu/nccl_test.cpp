// NCCL at world size 1 (the lent GPU machines have one GPU): every collective on CUDA tensors,
// and the Trainer's data-parallel path through it against the Trainer without it.
#include <gtest/gtest.h>

#include <vector>

#include "gpudl/core/dist/dist.h"
#include "gpudl/core/runtime/rng.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"
#include "test_util.h"

namespace gpudl {
namespace {

class NcclTest : public testing::GpuTest {
 protected:
  void SetUp() override {
    GpuTest::SetUp();
    if (IsSkipped()) return;
    if (!dist::built_with_nccl()) GTEST_SKIP() << "this build has no NCCL";
  }
};

TEST_F(NcclTest, EveryCollectiveAtOneRank) {
  const Device gpu = Device::local();
  dist::ProcessGroup& g = dist::group(gpu);
  EXPECT_EQ(g.backend(), "nccl");
  EXPECT_EQ(g.size(), 1);
  const std::vector<float> v{1.5f, -2.0f, 3.25f, 0.0f};
  Tensor t = Tensor::from_vector(v, {4}).to(gpu);
  g.all_reduce(t);
  g.all_reduce(t, dist::ReduceOp::kMean);
  g.all_reduce_async(t, dist::ReduceOp::kSum)->wait();
  g.broadcast(t, 0);
  EXPECT_EQ(t.to_vector<float>(), v);
  Tensor out = Tensor::empty({4}, DType::kF32, gpu);
  g.all_gather(out, t);
  EXPECT_EQ(out.to_vector<float>(), v);
  Tensor mine = Tensor::empty({4}, DType::kF32, gpu);
  g.reduce_scatter(mine, t, dist::ReduceOp::kSum);
  EXPECT_EQ(mine.to_vector<float>(), v);
  Tensor half = t.cast(DType::kBF16);
  g.all_reduce(half);
  EXPECT_EQ(half.cast(DType::kF32).to_vector<float>(), v);
  g.barrier();
  EXPECT_THROW(g.all_reduce(Tensor::from_vector(v, {4})), DeviceError);  // a CPU tensor
}

TEST_F(NcclTest, TrainerThroughNcclFollowsTheTrainerWithoutIt) {
  const Device gpu = Device::local();
  const data::TensorDataset data = testing::blobs(512, 21);
  std::vector<std::vector<float>> results;
  for (bool distributed : {false, true}) {
    manual_seed(5);
    Sequential net{Linear(8, 32), BatchNorm1d(32, {.sync = distributed}), ReLU(), Linear(32, 3)};
    net.to(gpu);
    SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9});
    CrossEntropyLoss loss;
    TrainerOptions o;
    o.batch = 64;
    o.epochs = 2;
    o.progress = false;
    o.precision = Precision::kF32;
    o.distributed = distributed;
    o.data_parallel.bucket_bytes = 1024;  // several buckets, started during backward
    Trainer trainer(net, opt, loss, o);
    trainer.fit(data);
    ASSERT_EQ(trainer.data_parallel() != nullptr, distributed);
    std::vector<float> all;
    for (auto& [name, t] : net.state()) {
      for (float x : t.as(DType::kF32).to_vector<float>()) all.push_back(x);
    }
    results.push_back(all);
  }
  // Summation order only (SyncBatchNorm sums its statistics by ops rather than in the fused kernel).
  EXPECT_LT(testing::relative_error(results[1], results[0]), 1e-5);
}

}  // namespace
}  // namespace gpudl
