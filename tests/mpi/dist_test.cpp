// Data parallelism under `mpirun -np 2` (CTest starts it so): the collectives, 2 ranks x batch
// 64 against 1 rank x batch 128 (an MLP, and a CNN with SyncBatchNorm), ZeRO-1 against plain
// data parallelism, and a checkpoint resumed under 2 ranks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gpudl/core/dist/data_parallel.h"
#include "gpudl/core/dist/dist.h"
#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/runtime/ops.h"
#include "gpudl/core/runtime/rng.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/sequential.h"
#include "test_util.h"

namespace gpudl {
namespace {

dist::ProcessGroup& cpu_group() { return dist::group(Device::cpu()); }

TEST(Dist, LaunchedWithTwoRanks) {
  ASSERT_EQ(dist::world_size(), 2) << "run this suite with mpirun -np 2";
  EXPECT_EQ(cpu_group().backend(), "mpi");
  EXPECT_EQ(dist::launch_info().size, 2);
  EXPECT_EQ(dist::launch_info().rank, dist::rank());
}

TEST(Dist, Collectives) {
  dist::ProcessGroup& g = cpu_group();
  const int r = g.rank();
  Tensor t = Tensor::from_vector(std::vector<float>{1.0f + r, 10.0f * (r + 1)}, {2});
  g.all_reduce(t);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{3.0f, 30.0f}));
  g.all_reduce(t, dist::ReduceOp::kMean);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{3.0f, 30.0f}));

  Tensor b = Tensor::from_vector(std::vector<std::int64_t>{r == 1 ? 7 : 0, r == 1 ? -3 : 0}, {2});
  g.broadcast(b, 1);
  EXPECT_EQ(b.to_vector<std::int64_t>(), (std::vector<std::int64_t>{7, -3}));

  Tensor in = Tensor::from_vector(std::vector<float>{static_cast<float>(r), static_cast<float>(r) + 0.5f}, {2});
  Tensor out = Tensor::empty({4});
  g.all_gather(out, in);
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{0.0f, 0.5f, 1.0f, 1.5f}));

  // Chunk k of rank r's input is (r + 1) * (k + 1): rank k gets the sum over r of its chunk.
  Tensor whole = Tensor::from_vector(std::vector<float>{1.0f * (r + 1), 1.0f * (r + 1), 2.0f * (r + 1), 2.0f * (r + 1)}, {4});
  Tensor mine = Tensor::empty({2});
  g.reduce_scatter(mine, whole, dist::ReduceOp::kSum);
  EXPECT_EQ(mine.to_vector<float>(), (std::vector<float>{3.0f * (r + 1), 3.0f * (r + 1)}));

  auto work = g.all_reduce_async(Tensor::full({3}, 2.0), dist::ReduceOp::kSum);
  work->wait();
  g.barrier();
}

TEST(Dist, BadTensorsAreRefusedByName) {
  dist::ProcessGroup& g = cpu_group();
  Tensor ids = Tensor::zeros({2}, DType::kI64);
  try {
    g.all_reduce(ids);
    FAIL() << "an i64 all-reduce was accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("mpi all_reduce: cannot reduce dtype i64"), std::string::npos) << e.what();
  }
  EXPECT_THROW(g.all_gather(Tensor::empty({3}), Tensor::empty({2})), ShapeError);
  EXPECT_THROW(g.reduce_scatter(Tensor::empty({3}), Tensor::empty({4}), dist::ReduceOp::kSum), ShapeError);
  EXPECT_THROW(g.broadcast(Tensor::empty({1}), 2), dist::DistError);
}

// The largest |a - b| over every parameter and buffer, relative to the largest |a|.
double state_difference(Module& a, Module& b) {
  const std::vector<NamedTensor> sa = a.state(), sb = b.state();
  EXPECT_EQ(sa.size(), sb.size());
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < sa.size() && i < sb.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    const std::vector<float> x = sa[i].second.as(DType::kF32).to_vector<float>(),
                             y = sb[i].second.as(DType::kF32).to_vector<float>();
    for (std::size_t k = 0; k < x.size(); ++k) {
      diff = std::max(diff, static_cast<double>(std::fabs(x[k] - y[k])));
      scale = std::max(scale, static_cast<double>(std::fabs(x[k])));
    }
  }
  return diff / std::max(scale, 1e-30);
}

// The same differences, required equal on both ranks: the replicas must not drift apart.
void expect_ranks_agree(Module& m) {
  for (auto& [name, t] : m.state()) {
    Tensor mine = t.as(DType::kF32).reshape({-1}).clone();
    Tensor theirs = mine.clone();
    cpu_group().broadcast(theirs, 0);
    EXPECT_EQ(mine.to_vector<float>(), theirs.to_vector<float>()) << name << " differs between ranks";
  }
}

struct RunSpec {
  std::int64_t batch;
  std::optional<bool> distributed;
  bool zero1 = false;
  float clip = 0.0f;
  Precision precision = Precision::kF32;
  std::string checkpoint = "";
  std::string resume = "";
  std::int64_t stop_after = 20;
  std::function<void(TrainerOptions&)> configure = nullptr;  // hooks and the like
};

template <class Opt>
void train(Module& net, const data::TensorDataset& data, const RunSpec& run, std::function<std::unique_ptr<Opt>(Module&)> make) {
  auto opt = make(net);
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.batch = run.batch;
  o.epochs = 100;
  o.seed = 5;
  o.progress = false;
  o.stop_after_steps = run.stop_after;
  o.distributed = run.distributed;
  o.data_parallel.zero1 = run.zero1;
  o.clip_grad_norm = run.clip;
  o.precision = run.precision;
  o.checkpoint = run.checkpoint;
  o.resume = run.resume;
  if (run.configure) run.configure(o);
  Trainer trainer(net, *opt, loss, o);
  trainer.fit(data);
}

Sequential mlp() {
  return Sequential{Linear(8, 32), ReLU(), Linear(32, 32), Tanh(), Linear(32, 3)};
}

// A model initialised from `seed`: two calls with one seed give two equal replicas.
Sequential seeded(std::uint64_t seed, Sequential (*make)()) {
  manual_seed(seed);
  return make();
}

std::unique_ptr<SGD> sgd(Module& m) { return std::make_unique<SGD>(m.parameters(), SGDOptions{.lr = 0.1, .momentum = 0.9}); }
std::unique_ptr<Adam> adam(Module& m) { return std::make_unique<Adam>(m.parameters(), AdamOptions{.lr = 0.01}); }

// FP32 summation order is the only difference: one rank sums 128 per-sample gradients at
// once, two ranks sum 64 each and then add the two halves (and SyncBatchNorm sums its
// statistics in two parts). Over 30 seeds, 20 steps of SGD with momentum left at most 2.5e-7
// (the MLP) and 1.0e-6 (the CNN) of the largest parameter between the two; the bound leaves
// 20x for other machines' vector widths, and is far below what a wrong share (a gradient off
// by a factor, a sample seen twice, a rank's own statistics) gives, which is above 1e-3.
constexpr double kSummationOrder = 2e-5;
// The same with f16 compute, where an ulp of difference in a master weight can flip its f16
// copy; see ZeroOneClipsAndScalesLossesAsPlainDataParallelism.
constexpr double kHalfPrecisionDrift = 1e-3;

// 1001 samples: each epoch ends with a batch of 105, cut 52 + 53, so the shares' weights matter.
TEST(DataParallel, TwoRanksOfBatch64EqualOneRankOfBatch128) {
  const data::TensorDataset data = testing::blobs(1001, 11);
  Sequential reference = seeded(3, mlp);
  Sequential parallel = seeded(3, mlp);
  train<SGD>(reference, data, {.batch = 128, .distributed = false}, sgd);
  train<SGD>(parallel, data, {.batch = 64, .distributed = true}, sgd);
  const double d = state_difference(reference, parallel);
  EXPECT_LT(d, kSummationOrder);
  std::printf("MLP: 2 x 64 against 1 x 128 after 20 steps: relative difference %.3g\n", d);
  // And it trained: a difference of zero between two untouched models would prove nothing.
  Sequential untouched = seeded(3, mlp);
  EXPECT_GT(state_difference(untouched, parallel), 1e-2);
  expect_ranks_agree(parallel);
}

// 3x8x8 images from the blobs' values, so a convolution has something to learn.
data::TensorDataset images(std::int64_t n) {
  const data::TensorDataset b = testing::blobs(n, 23);
  std::vector<float> x(static_cast<std::size_t>(n * 3 * 8 * 8));
  const std::vector<float> v = b.inputs().to_vector<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t k = 0; k < 3 * 64; ++k) {
      x[static_cast<std::size_t>(i * 192 + k)] = v[static_cast<std::size_t>(i * 8 + k % 8)] * (1.0f + 0.01f * (k % 7));
    }
  }
  return data::TensorDataset(Tensor::from_vector(x, {n, 3, 8, 8}), b.labels());
}

Sequential cnn(bool sync) {
  return Sequential{Conv2d(3, 8, 3, {.padding = 1}), BatchNorm2d(8, {.sync = sync}), ReLU(), MaxPool2d(2), Flatten(),
                    Linear(8 * 4 * 4, 16), BatchNorm1d(16, {.sync = sync}), ReLU(), Linear(16, 3)};
}

Sequential sync_cnn() { return cnn(true); }
Sequential plain_cnn() { return cnn(false); }

// 601 images: each epoch ends with a batch of 89, cut 44 + 45.
TEST(DataParallel, SyncBatchNormTwoRanksEqualOneRankOfTheWholeBatch) {
  const data::TensorDataset data = images(601);
  Sequential reference = seeded(4, plain_cnn);
  Sequential parallel = seeded(4, sync_cnn);
  train<SGD>(reference, data, {.batch = 128, .distributed = false}, sgd);
  train<SGD>(parallel, data, {.batch = 64, .distributed = true}, sgd);
  // Running statistics included: state() holds the batch norms' buffers.
  const double d = state_difference(reference, parallel);
  EXPECT_LT(d, kSummationOrder);
  std::printf("CNN with SyncBatchNorm: 2 x 64 against 1 x 128 after 20 steps: relative difference %.3g\n", d);
  expect_ranks_agree(parallel);

  // Without the sync, each rank normalises by its own half: measurably another model.
  Sequential local = seeded(4, plain_cnn);
  train<SGD>(local, data, {.batch = 64, .distributed = true}, sgd);
  EXPECT_GT(state_difference(reference, local), 10 * kSummationOrder);
}

TEST(DataParallel, ZeroOneEqualsPlainDataParallelism) {
  const data::TensorDataset data = testing::blobs(1000, 12);
  Sequential plain = seeded(6, mlp);
  Sequential sharded = seeded(6, mlp);
  train<Adam>(plain, data, {.batch = 64, .distributed = true}, adam);
  train<Adam>(sharded, data, {.batch = 64, .distributed = true, .zero1 = true}, adam);
  // The same sums in the same order: a reduce-scatter adds the ranks' values as an all-reduce does.
  EXPECT_EQ(state_difference(plain, sharded), 0.0);
  expect_ranks_agree(sharded);
}

// Clipping and fp16's finite check see each rank's share only; the norm and the flag are
// summed over the ranks, so the steps are plain data parallelism's.
TEST(DataParallel, ZeroOneClipsAndScalesLossesAsPlainDataParallelism) {
  const data::TensorDataset data = testing::blobs(1000, 15);
  const auto compare = [&](float clip, Precision precision) {
    Sequential plain = seeded(10, mlp);
    Sequential sharded = seeded(10, mlp);
    const RunSpec base{.batch = 64, .distributed = true, .clip = clip, .precision = precision};
    RunSpec zero = base;
    zero.zero1 = true;
    train<Adam>(plain, data, base, adam);
    train<Adam>(sharded, data, zero, adam);
    expect_ranks_agree(sharded);
    return state_difference(plain, sharded);
  };
  // The finite flag is exact: the same steps are skipped and the same scale is kept.
  EXPECT_EQ(compare(0.0f, Precision::kF16), 0.0);
  // The sum of squares adds the two shares' partial sums: another order than one rank's sum.
  EXPECT_LT(compare(0.3f, Precision::kF32), kSummationOrder);
  // Both at once. The last bit of the norm moves a master weight by an ulp now and then, and
  // where that flips the weight's f16 copy (2^-11 apart) the two runs drift apart. Over 32
  // seeds that left up to 6e-5 of the largest parameter (none without f16: 3e-7); a norm taken
  // over one rank's share (clip off by sqrt 2) leaves 2e-2 or more.
  EXPECT_LT(compare(0.3f, Precision::kF16), kHalfPrecisionDrift);
}

TEST(DataParallel, ZeroOneKeepsStateForItsShareOnly) {
  Sequential net = seeded(7, mlp);
  Adam opt(net.parameters(), {.lr = 0.01});
  dist::DataParallel dp(net, cpu_group(), {.zero1 = true});
  dp.shard(opt);
  const auto params = net.parameters();
  int mine = 0, theirs = 0;
  for (std::size_t i = 0; i < params.size(); ++i) (dp.owner(i) == cpu_group().rank() ? mine : theirs)++;
  EXPECT_GT(mine, 0);
  EXPECT_GT(theirs, 0);
  for (std::size_t i = 0; i < params.size(); ++i) EXPECT_EQ(opt.owns(i), dp.owner(i) == cpu_group().rank());
}

std::string shared_path(const std::string& name) {
  // Both ranks run on this machine under one mpirun, their common parent.
  return "/tmp/gpudl_dist_test_" + std::to_string(getppid()) + "_" + name;
}

TEST(DataParallel, ResumedUnderTwoRanksEndsWhereTheUninterruptedRunEnds) {
  for (bool zero1 : {false, true}) {
    SCOPED_TRACE(zero1 ? "zero1" : "plain");
    const data::TensorDataset data = testing::blobs(700, 13);
    const std::string path = shared_path(zero1 ? "zero1.safetensors" : "plain.safetensors");
    Sequential whole = seeded(8, mlp);
    train<Adam>(whole, data, {.batch = 32, .distributed = true, .zero1 = zero1, .stop_after = 30}, adam);
    Sequential first = seeded(8, mlp);
    train<Adam>(first, data, {.batch = 32, .distributed = true, .zero1 = zero1, .checkpoint = path, .stop_after = 13}, adam);
    Sequential second = seeded(99, mlp);  // another start: everything must come from the checkpoint
    train<Adam>(second, data, {.batch = 32, .distributed = true, .zero1 = zero1, .resume = path, .stop_after = 30}, adam);
    EXPECT_EQ(state_difference(whole, second), 0.0);
    // The checkpoint holds the whole optimizer state, not rank 0's share.
    if (cpu_group().rank() == 0) {
      const SafetensorsContents file = load_safetensors(path);
      int moments = 0;
      for (const auto& [name, t] : file.tensors) {
        if (name.find(".exp_avg_sq") == std::string::npos) continue;
        ++moments;
        EXPECT_GT(ops::sum(ops::mul(t.reshape({-1}), t.reshape({-1})), 0).to_vector<float>()[0], 0.0f) << name;
      }
      EXPECT_EQ(moments, 6);
      std::remove(path.c_str());
    }
    cpu_group().barrier();
  }
}

Sequential dropout_mlp() { return Sequential{Linear(8, 32), ReLU(), Dropout(0.3f), Linear(32, 3)}; }

// What differs between ranks beyond the model comes back to its own rank on resume: the
// dropout masks (seeded by rank; 701 = 10 x 64 + 61 also makes the last batch uneven) and a
// checkpoint_extra entry holding the rank's number.
TEST(DataParallel, ResumedRanksGetTheirOwnGeneratorsAndExtras) {
  const data::TensorDataset data = testing::blobs(701, 16);
  const std::string path = shared_path("per_rank.safetensors");
  const float me = static_cast<float>(cpu_group().rank());
  float restored = -1.0f;
  auto hooks = [&](TrainerOptions& o) {
    o.checkpoint_extra = [me] { return std::vector<NamedTensor>{{"rank_state", Tensor::full({2}, me)}}; };
    o.restore_extra = [&restored](const std::string&, const std::vector<NamedTensor>& extra) {
      ASSERT_EQ(extra.size(), 1u);  // the other ranks' copies are not passed on
      EXPECT_EQ(extra[0].first, "rank_state");
      restored = extra[0].second.to_vector<float>()[0];
    };
  };
  Sequential whole = seeded(11, dropout_mlp);
  train<Adam>(whole, data, {.batch = 32, .distributed = true, .stop_after = 25, .configure = hooks}, adam);
  Sequential first = seeded(11, dropout_mlp);
  train<Adam>(first, data, {.batch = 32, .distributed = true, .checkpoint = path, .stop_after = 14, .configure = hooks},
              adam);
  Sequential second = seeded(12, dropout_mlp);
  train<Adam>(second, data, {.batch = 32, .distributed = true, .resume = path, .stop_after = 25, .configure = hooks},
              adam);
  EXPECT_EQ(restored, me);
  EXPECT_EQ(state_difference(whole, second), 0.0);
  expect_ranks_agree(second);
  cpu_group().barrier();
  if (cpu_group().rank() == 0) std::remove(path.c_str());
}

TEST(DataParallel, ShardedEvaluationSumsEveryPart) {
  const data::TensorDataset data = testing::blobs(301, 14);  // not a multiple of the ranks
  Sequential net = seeded(9, mlp);
  SGD opt(net.parameters(), {.lr = 0.1});
  CrossEntropyLoss loss;
  TrainerOptions local;
  local.progress = false;
  local.distributed = false;
  local.eval_batch = 50;
  TrainerOptions shared = local;
  shared.distributed = true;
  const EvalResult a = Trainer(net, opt, loss, local).evaluate(data);
  const EvalResult b = Trainer(net, opt, loss, shared).evaluate(data);
  EXPECT_EQ(b.samples, 301);
  EXPECT_NEAR(b.loss, a.loss, 1e-6 * std::fabs(a.loss));
  EXPECT_DOUBLE_EQ(b.accuracy, a.accuracy);
}

}  // namespace
}  // namespace gpudl

// Only rank 0 reports, unless a test fails on another rank (its failure is still printed).
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Every rank must draw the same test data: rank 0's seed is everyone's.
  if (std::getenv("GPUDL_TEST_SEED") == nullptr) {
    gpudl::Tensor seed = gpudl::Tensor::from_vector(
        std::vector<std::int64_t>{static_cast<std::int64_t>(std::random_device{}() & 0x7fffffff)}, {1});
    gpudl::dist::group(gpudl::Device::cpu()).broadcast(seed, 0);
    setenv("GPUDL_TEST_SEED", std::to_string(seed.to_vector<std::int64_t>()[0]).c_str(), 1);
  }
  if (gpudl::dist::rank() != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    struct Failures : ::testing::EmptyTestEventListener {
      void OnTestPartResult(const ::testing::TestPartResult& r) override {
        if (r.failed()) {
          std::fprintf(stderr, "rank %d: %s:%d: %s\n", gpudl::dist::rank(), r.file_name() ? r.file_name() : "?",
                       r.line_number(), r.summary());
        }
      }
    };
    listeners.Append(new Failures);
  }
  return RUN_ALL_TESTS();
}
