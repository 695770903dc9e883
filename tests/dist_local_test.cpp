// Data parallelism's pieces that one process can check: the loaders' shards, the one-rank
// group, DataParallel's buckets over it, the Trainer's distributed path at one rank, and the
// launcher's environment. (Two ranks: tests/mpi, under mpirun.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <vector>

#include "gpudl/core/data/data.h"
#include "gpudl/core/data/text.h"
#include "gpudl/core/dist/data_parallel.h"
#include "gpudl/core/dist/dist.h"
#include "gpudl/core/runtime/rng.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"
#include "test_util.h"

namespace gpudl {
namespace {

data::TensorDataset numbered(std::int64_t n) {
  std::vector<float> x(static_cast<std::size_t>(n));
  std::vector<std::int64_t> y(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(i), y[static_cast<std::size_t>(i)] = i;
  return data::TensorDataset(Tensor::from_vector(x, {n, 1}), Tensor::from_vector(y, {n}));
}

// Rank r's parts of every batch, joined over the ranks, are the one-rank loader's batches at
// the global batch size: the same samples in the same order, none twice.
TEST(DistShards, RanksCutEachGlobalBatchInOrder) {
  const data::TensorDataset d = numbered(103);
  for (bool drop_last : {false, true}) {
    data::DataLoader whole(d, {.batch = 24, .shuffle = true, .drop_last = drop_last, .seed = 7});
    std::vector<data::DataLoader> ranks;
    for (int r = 0; r < 3; ++r) {
      ranks.emplace_back(d, data::LoaderOptions{.batch = 8, .shuffle = true, .drop_last = drop_last, .seed = 7,
                                                .rank = r, .world = 3});
    }
    // 103 = 4 x 24 + 7: the trailing 7 give every rank at least 2, so it stays (without drop_last).
    EXPECT_EQ(ranks[0].batches_per_epoch(), drop_last ? 4 : 5);
    ASSERT_EQ(whole.batches_per_epoch(), ranks[0].batches_per_epoch());
    for (std::int64_t epoch = 0; epoch < 2; ++epoch) {
      for (std::int64_t k = 0; k < whole.batches_per_epoch(); ++k) {
        data::Batch all;
        whole.fill(epoch, k, all);
        std::vector<std::int64_t> joined;
        for (auto& loader : ranks) {
          data::Batch part;
          loader.fill(epoch, k, part);
          EXPECT_EQ(part.global_size, all.labels.numel());
          for (std::int64_t v : part.labels.to_vector<std::int64_t>()) joined.push_back(v);
        }
        EXPECT_EQ(joined, all.labels.to_vector<std::int64_t>()) << "epoch " << epoch << " batch " << k;
      }
    }
  }
}

TEST(DistShards, ATrailingBatchWithoutASampleForEveryRankIsLeftOut) {
  // 50 = 2 x 24 + 2: two samples cannot feed three ranks.
  data::DataLoader loader(numbered(50), {.batch = 8, .shuffle = false, .rank = 2, .world = 3});
  EXPECT_EQ(loader.batches_per_epoch(), 2);
  EXPECT_THROW(data::DataLoader(numbered(5), {.batch = 1, .rank = 3, .world = 3}), ValueError);
  EXPECT_THROW(data::DataLoader(numbered(5), {.batch = 1, .rank = 0, .world = 0}), ValueError);
}

TEST(DistShards, TextStreamsAreDealtOutByRank) {
  std::vector<std::int32_t> ids(400);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(i);
  data::StreamBatches whole(ids, 4, 5);
  data::StreamBatches r1(ids, 2, 5);
  ASSERT_TRUE(r1.set_shard(1, 2));
  EXPECT_EQ(r1.chunks(), whole.chunks());
  data::Batch a, b;
  whole.fill(0, 3, a);
  r1.fill(0, 3, b);
  // Rank 1 holds streams 2 and 3 of the four.
  const auto wa = a.inputs.to_vector<std::int32_t>(), wb = b.inputs.to_vector<std::int32_t>();
  for (std::int64_t t = 0; t < 5; ++t) {
    EXPECT_EQ(wb[static_cast<std::size_t>(t * 2)], wa[static_cast<std::size_t>(t * 4 + 2)]);
    EXPECT_EQ(wb[static_cast<std::size_t>(t * 2 + 1)], wa[static_cast<std::size_t>(t * 4 + 3)]);
  }
  EXPECT_EQ(b.global_size, 20);
  bool found_ranks = false;
  for (const auto& [k, v] : r1.order_settings()) found_ranks = found_ranks || (k == "ranks" && v == "2");
  EXPECT_TRUE(found_ranks);
}

TEST(DistSingle, OneProcessIsAOneRankGroup) {
  ASSERT_EQ(dist::launch_info().size, 1) << "run this suite without mpirun";
  dist::ProcessGroup& g = dist::group(Device::cpu());
  EXPECT_EQ(g.backend(), "single");
  EXPECT_EQ(g.size(), 1);
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2}, {2});
  g.all_reduce(t, dist::ReduceOp::kMean);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 2}));
  Tensor out = Tensor::empty({2});
  g.all_gather(out, t);
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{1, 2}));
  EXPECT_THROW(g.broadcast(t, 1), dist::DistError);
  EXPECT_THROW(g.all_reduce(Tensor::zeros({1}, DType::kI64)), ValueError);
  EXPECT_FALSE(dist::is_distributed());
}

TEST(DistSingle, TimeoutComesFromTheEnvironment) {
  setenv("GPUDL_DIST_TIMEOUT", "12.5", 1);
  EXPECT_EQ(dist::default_timeout(), 12.5);
  setenv("GPUDL_DIST_TIMEOUT", "soon", 1);
  EXPECT_THROW(dist::default_timeout(), ValueError);
  unsetenv("GPUDL_DIST_TIMEOUT");
  EXPECT_EQ(dist::default_timeout(), 300.0);
  EXPECT_THROW(dist::set_timeout(0.0), ValueError);
}

TEST(DistSingle, LauncherEnvironmentIsRead) {
  // Slurm's names; the process group is never asked for while they are set.
  setenv("SLURM_NTASKS", "8", 1);
  setenv("SLURM_PROCID", "5", 1);
  setenv("SLURM_LOCALID", "1", 1);
  setenv("SLURM_NTASKS_PER_NODE", "4", 1);
  const dist::LaunchInfo info = dist::launch_info();
  for (const char* name : {"SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"}) unsetenv(name);
  EXPECT_EQ(info.size, 8);
  EXPECT_EQ(info.rank, 5);
  EXPECT_EQ(info.local_rank, 1);
  EXPECT_EQ(info.local_size, 4);
  EXPECT_EQ(dist::launch_info().size, 1);
}

Sequential net() { return Sequential{Linear(4, 16), ReLU(), Linear(16, 16), ReLU(), Linear(16, 3)}; }

TEST(DistSingle, BucketsFollowBackwardAndLeaveOneRanksGradientsAlone) {
  manual_seed(1);
  Sequential m = net();
  // 64 floats a bucket: the 16x16 weight (256) gets one of its own.
  dist::DataParallel dp(m, dist::group(Device::cpu()), {.bucket_bytes = 64 * sizeof(float)});
  EXPECT_GE(dp.bucket_count(), 4u);
  const Tensor x = Tensor::from_vector(testing::random_vector(8 * 4, 3), {8, 4});
  m.zero_grad();
  m.forward(x);
  m.backward(Tensor::full({8, 3}, 0.5));
  std::vector<std::vector<float>> before;
  for (Parameter* p : m.parameters()) before.push_back(p->grad.to_vector<float>());
  m.zero_grad();
  m.forward(x);
  dp.prepare(1.0);
  m.backward(Tensor::full({8, 3}, 0.5));
  dp.synchronize();
  const auto params = m.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) EXPECT_EQ(params[i]->grad.to_vector<float>(), before[i]) << i;
  EXPECT_THROW(dp.prepare(-1.0), ValueError);
  EXPECT_THROW(dist::DataParallel(m, dist::group(Device::cpu()), {.bucket_bytes = 0}), ValueError);
}

// Every parameter after fitting `data` from seed 2 with options `o` (one rank at most).
std::vector<float> fitted(const data::TensorDataset& data, TrainerOptions o) {
  manual_seed(2);
  Sequential wide{Linear(8, 4), net()};
  Adam opt(wide.parameters(), {.lr = 0.01});
  CrossEntropyLoss loss;
  o.epochs = 2;
  o.progress = false;
  Trainer t(wide, opt, loss, o);
  EXPECT_EQ(t.data_parallel() != nullptr, o.distributed.value_or(false));
  EXPECT_EQ(t.world_size(), 1);
  t.fit(data);
  std::vector<float> all;
  for (Parameter* p : wide.parameters()) {
    for (float v : p->value.to_vector<float>()) all.push_back(v);
  }
  return all;
}

TEST(DistSingle, TrainerAtOneRankMatchesTheTrainerWithoutIt) {
  const data::TensorDataset data = testing::blobs(300, 5);
  TrainerOptions o;
  o.batch = 32;
  o.distributed = false;
  const std::vector<float> plain = fitted(data, o);
  o.distributed = true;
  EXPECT_EQ(fitted(data, o), plain);
}

// ZeRO-1 at one rank owns everything: with clipping and fp16 loss scaling (both over the
// rank's share, agreed by collectives) it must train exactly as without data parallelism.
TEST(DistSingle, ZeroOneAtOneRankClipsAndScalesAsWithout) {
  const data::TensorDataset data = testing::blobs(200, 8);
  TrainerOptions o;
  o.batch = 25;
  o.precision = Precision::kF16;
  o.clip_grad_norm = 0.5f;
  o.distributed = false;
  const std::vector<float> plain = fitted(data, o);
  o.distributed = true;
  o.data_parallel.zero1 = true;
  EXPECT_EQ(fitted(data, o), plain);
}

}  // namespace
}  // namespace gpudl
