// TensorDataset's checks, normalize and take; the DataLoader's batches, order, resume and buffers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "gpudl/core/data/data.h"
#include "gpudl/kernels/philox.h"
#include "test_util.h"

namespace gpudl::data {
namespace {

using gpudl::testing::test_seed;

constexpr std::int64_t kRow = 6;  // elements per sample of indexed_dataset, shape (2, 3)

// n samples of shape (2, 3) whose elements are 100 * index + position and whose label is the
// index, so a batch shows which samples it holds and whether their rows stayed whole.
TensorDataset indexed_dataset(std::int64_t n) {
  std::vector<float> x(static_cast<std::size_t>(n * kRow));
  std::vector<std::int64_t> y(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    y[static_cast<std::size_t>(i)] = i;
    for (std::int64_t p = 0; p < kRow; ++p) x[static_cast<std::size_t>(i * kRow + p)] = static_cast<float>(100 * i + p);
  }
  return TensorDataset(Tensor::from_vector(x, {n, 2, 3}), Tensor::from_vector(y, {n}));
}

// Every sample's inputs must be the row its label names.
void expect_rows_match_labels(const Batch& b) {
  const std::vector<float> x = b.inputs.to_vector<float>();
  const std::vector<std::int64_t> y = b.labels.to_vector<std::int64_t>();
  ASSERT_EQ(x.size(), y.size() * kRow);
  for (std::size_t i = 0; i < y.size(); ++i) {
    for (std::int64_t p = 0; p < kRow; ++p) {
      ASSERT_EQ(x[i * kRow + static_cast<std::size_t>(p)], static_cast<float>(100 * y[i] + p)) << "sample " << i;
    }
  }
}

// The labels of every batch of the loader's current epoch, from where it stands.
std::vector<std::vector<std::int64_t>> drain(DataLoader& loader) {
  std::vector<std::vector<std::int64_t>> out;
  Batch b;
  while (loader.next(b)) {
    expect_rows_match_labels(b);
    out.push_back(b.labels.to_vector<std::int64_t>());
  }
  return out;
}

// The shuffle as the DataLoader's contract spells it, written out independently.
std::vector<std::int64_t> reference_order(std::int64_t n, std::uint64_t seed, std::uint64_t epoch) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::uint64_t k = 0;
  for (std::int64_t i = n - 1; i >= 1; --i) {
    const std::uint32_t word = kernels::philox_block(seed, epoch, k / 4).v[k % 4];
    ++k;
    const auto j = static_cast<std::size_t>((std::uint64_t{word} * static_cast<std::uint64_t>(i + 1)) >> 32);
    std::swap(order[static_cast<std::size_t>(i)], order[j]);
  }
  return order;
}

template <class Fn>
void expect_message(Fn fn, const std::string& message) {
  try {
    fn();
    ADD_FAILURE() << "expected an exception with message: " << message;
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), message);
  }
}

TEST(TensorDataset, HoldsInputsAndLabels) {
  const TensorDataset ds = indexed_dataset(5);
  EXPECT_EQ(ds.size(), 5);
  EXPECT_EQ(ds.sample_shape(), (Shape{2, 3}));
  EXPECT_EQ(ds.inputs().shape(), (Shape{5, 2, 3}));
  EXPECT_EQ(ds.labels().to_vector<std::int64_t>(), (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
  const TensorDataset empty;
  EXPECT_EQ(empty.size(), 0);
  EXPECT_EQ(empty.sample_shape(), Shape{});
}

TEST(TensorDataset, RejectsMismatchedShapes) {
  const Tensor labels3 = Tensor::zeros({3}, DType::kI64);
  EXPECT_THROW(TensorDataset(Tensor::zeros({4, 2}), labels3), ShapeError);
  expect_message([&] { TensorDataset(Tensor::zeros({4, 2}), labels3); },
                 "TensorDataset: inputs [4, 2] and labels [3] differ in sample count");
  EXPECT_THROW(TensorDataset(Tensor::zeros({3, 2}), Tensor::zeros({3, 1}, DType::kI64)), ShapeError);
  expect_message([&] { TensorDataset(Tensor::zeros({3, 2}), Tensor::zeros({3, 1}, DType::kI64)); },
                 "TensorDataset: labels [3, 1] must be 1-D");
  EXPECT_THROW(TensorDataset(Tensor::zeros({}), Tensor::zeros({1}, DType::kI64)), ShapeError);
}

TEST(TensorDataset, RejectsWrongDtypesAndUndefinedTensors) {
  EXPECT_THROW(TensorDataset(Tensor::zeros({3, 2}, DType::kU8), Tensor::zeros({3}, DType::kI64)), ValueError);
  expect_message([] { TensorDataset(Tensor::zeros({3, 2}, DType::kU8), Tensor::zeros({3}, DType::kI64)); },
                 "TensorDataset: inputs [3, 2] has dtype u8, expected f32");
  EXPECT_THROW(TensorDataset(Tensor::zeros({3, 2}), Tensor::zeros({3}, DType::kI32)), ValueError);
  expect_message([] { TensorDataset(Tensor::zeros({3, 2}), Tensor::zeros({3}, DType::kI32)); },
                 "TensorDataset: labels [3] has dtype i32, expected i64");
  EXPECT_THROW(TensorDataset(Tensor(), Tensor::zeros({3}, DType::kI64)), ValueError);
  EXPECT_THROW(TensorDataset(Tensor::zeros({3}), Tensor()), ValueError);
}

TEST(TensorDataset, NormalizeShiftsAndScalesInPlace) {
  TensorDataset ds(Tensor::from_vector(std::vector<float>{0.0f, 0.5f, 1.0f, 2.0f}, {2, 2}),
                   Tensor::from_vector(std::vector<std::int64_t>{0, 1}, {2}));
  const Tensor shared = ds.inputs();
  ds.normalize(0.5f, 0.25f);
  EXPECT_EQ(ds.inputs().to_vector<float>(), (std::vector<float>{-2.0f, 0.0f, 2.0f, 6.0f}));
  EXPECT_EQ(shared.to_vector<float>(), ds.inputs().to_vector<float>());  // in place, not a copy
  EXPECT_THROW(ds.normalize(0.0f, 0.0f), ValueError);
  EXPECT_THROW(ds.normalize(0.0f, -1.0f), ValueError);
}

TEST(TensorDataset, TakeViewsTheFirstSamples) {
  TensorDataset ds = indexed_dataset(10);
  const TensorDataset head = ds.take(4);
  EXPECT_EQ(head.size(), 4);
  EXPECT_EQ(head.sample_shape(), (Shape{2, 3}));
  EXPECT_EQ(head.labels().to_vector<std::int64_t>(), (std::vector<std::int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(head.inputs().raw(), ds.inputs().raw());
  ds.normalize(1.0f, 2.0f);  // a view sees the parent's changes
  EXPECT_EQ(head.inputs().to_vector<float>()[1], 0.0f);
  EXPECT_EQ(ds.take(0).size(), 0);
  EXPECT_EQ(ds.take(10).size(), 10);
  EXPECT_THROW(ds.take(11), ValueError);
  expect_message([&] { ds.take(11); }, "TensorDataset::take: cannot take 11 samples from 10");
  EXPECT_THROW(ds.take(-1), ValueError);
}

TEST(DataLoader, CountsBatchesWithAndWithoutDropLast) {
  const TensorDataset ds = indexed_dataset(10);
  EXPECT_EQ(DataLoader(ds, {.batch = 3}).batches_per_epoch(), 4);
  EXPECT_EQ(DataLoader(ds, {.batch = 3, .drop_last = true}).batches_per_epoch(), 3);
  EXPECT_EQ(DataLoader(ds, {.batch = 5}).batches_per_epoch(), 2);
  EXPECT_EQ(DataLoader(ds, {.batch = 5, .drop_last = true}).batches_per_epoch(), 2);
  EXPECT_EQ(DataLoader(ds, {.batch = 64}).batches_per_epoch(), 1);
  EXPECT_EQ(DataLoader(ds, {.batch = 64, .drop_last = true}).batches_per_epoch(), 0);

  DataLoader keep(ds, {.batch = 3});
  const auto sizes = drain(keep);
  ASSERT_EQ(sizes.size(), 4u);
  EXPECT_EQ(sizes.back().size(), 1u);
  EXPECT_EQ(keep.position(), 4);
  DataLoader drop(ds, {.batch = 3, .drop_last = true});
  const auto full = drain(drop);
  ASSERT_EQ(full.size(), 3u);
  for (const auto& b : full) EXPECT_EQ(b.size(), 3u);
}

TEST(DataLoader, RejectsBadOptionsAndPositions) {
  const TensorDataset ds = indexed_dataset(10);
  EXPECT_THROW(DataLoader(ds, {.batch = 0}), ValueError);
  expect_message([&] { DataLoader(ds, {.batch = -2}); }, "DataLoader: batch must be >= 1, got -2");
  DataLoader loader(ds, {.batch = 4});
  EXPECT_THROW(loader.seek(0, 4), ValueError);
  expect_message([&] { loader.seek(1, 4); }, "DataLoader::seek: position 4 is outside [0, 3]");
  EXPECT_THROW(loader.seek(0, -1), ValueError);
  EXPECT_THROW(loader.seek(-1, 0), ValueError);
  EXPECT_THROW(loader.start_epoch(-1), ValueError);
  EXPECT_NO_THROW(loader.seek(2, 3));  // the end of an epoch is a valid place to resume
  Batch b;
  EXPECT_FALSE(loader.next(b));
  EXPECT_FALSE(b.inputs.defined());
}

TEST(DataLoader, DeliversEveryIndexOncePerEpoch) {
  const TensorDataset ds = indexed_dataset(103);
  DataLoader loader(ds, {.batch = 16, .seed = test_seed()});
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    loader.start_epoch(epoch);
    EXPECT_EQ(loader.epoch(), epoch);
    std::vector<std::int64_t> seen;
    for (const auto& batch : drain(loader)) seen.insert(seen.end(), batch.begin(), batch.end());
    EXPECT_EQ(seen, loader.order());
    std::sort(seen.begin(), seen.end());
    std::vector<std::int64_t> all(103);
    std::iota(all.begin(), all.end(), std::int64_t{0});
    EXPECT_EQ(seen, all) << "epoch " << epoch;
  }
}

TEST(DataLoader, OrderIsAPureFunctionOfSeedAndEpoch) {
  const TensorDataset ds = indexed_dataset(50);
  const std::uint64_t seed = test_seed();
  DataLoader a(ds, {.batch = 8, .seed = seed});
  DataLoader b(ds, {.batch = 8, .seed = seed});
  b.start_epoch(5);  // visit another epoch first: no state may leak between epochs
  a.start_epoch(3);
  b.start_epoch(3);
  EXPECT_EQ(a.order(), b.order());
  EXPECT_EQ(drain(a), drain(b));
  const std::vector<std::int64_t> epoch3 = a.order();
  a.start_epoch(4);
  EXPECT_NE(a.order(), epoch3);
  DataLoader other_seed(ds, {.batch = 8, .seed = seed + 1});
  other_seed.start_epoch(3);
  EXPECT_NE(other_seed.order(), epoch3);
}

TEST(DataLoader, OrderMatchesTheDocumentedShuffle) {
  const std::uint64_t seed = test_seed();
  for (const std::int64_t n : {0, 1, 2, 5, 97}) {
    DataLoader loader(indexed_dataset(n), {.batch = 4, .seed = seed});
    for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
      loader.start_epoch(epoch);
      EXPECT_EQ(loader.order(), reference_order(n, seed, static_cast<std::uint64_t>(epoch))) << "n " << n;
      EXPECT_EQ(loader.order(), shuffled_order(n, seed, static_cast<std::uint64_t>(epoch)));
    }
  }
  EXPECT_THROW(shuffled_order(-1, seed, 0), ValueError);
}

TEST(DataLoader, WithoutShuffleKeepsTheDataSetOrder) {
  DataLoader loader(indexed_dataset(7), {.batch = 3, .shuffle = false, .seed = test_seed()});
  loader.start_epoch(9);
  EXPECT_EQ(drain(loader), (std::vector<std::vector<std::int64_t>>{{0, 1, 2}, {3, 4, 5}, {6}}));
}

TEST(DataLoader, SeekResumesAnUninterruptedRun) {
  const TensorDataset ds = indexed_dataset(45);
  const LoaderOptions options{.batch = 7, .seed = test_seed()};
  for (const std::int64_t epoch : {0, 2}) {
    DataLoader straight(ds, options);
    straight.start_epoch(epoch);
    const auto expected = drain(straight);
    ASSERT_EQ(expected.size(), 7u);
    for (std::int64_t k = 0; k < 7; ++k) {
      DataLoader resumed(ds, options);  // a fresh process restoring (epoch, k) from a checkpoint
      resumed.seek(epoch, k);
      EXPECT_EQ(resumed.epoch(), epoch);
      EXPECT_EQ(resumed.position(), k);
      Batch b;
      ASSERT_TRUE(resumed.next(b));
      expect_rows_match_labels(b);
      EXPECT_EQ(b.labels.to_vector<std::int64_t>(), expected[static_cast<std::size_t>(k)]) << "k " << k;
      EXPECT_EQ(resumed.position(), k + 1);
    }
  }
}

// As a BatchSource: batch k of epoch e straight away, whatever was read before, and the
// settings a checkpoint records about the order.
TEST(DataLoader, FillsAnyBatchOfAnyEpochAsABatchSource) {
  const TensorDataset ds = indexed_dataset(20);
  const LoaderOptions options{.batch = 6, .seed = test_seed()};
  DataLoader straight(ds, options);
  straight.start_epoch(3);
  const auto expected = drain(straight);
  ASSERT_EQ(expected.size(), 4u);
  DataLoader source(ds, options);
  BatchSource& s = source;
  EXPECT_EQ(s.batches_per_epoch(), 4);
  EXPECT_TRUE(s.shuffled());
  Batch b;
  for (const std::int64_t k : {2, 0, 3, 1}) {
    s.fill(3, k, b);
    expect_rows_match_labels(b);
    EXPECT_EQ(b.labels.to_vector<std::int64_t>(), expected[static_cast<std::size_t>(k)]) << "k " << k;
  }
  EXPECT_THROW(s.fill(3, 4, b), ValueError);
  EXPECT_THROW(s.fill(-1, 0, b), ValueError);
  const OrderSettings settings = s.order_settings();
  const OrderSettings want = {{"batch", "6"}, {"shuffle", "1"}, {"drop_last", "0"}, {"samples", "20"},
                              {"seed", std::to_string(test_seed())}};
  EXPECT_EQ(settings, want);
  // Unshuffled, the seed orders nothing and is not a setting to hold a resume to.
  const OrderSettings plain = DataLoader(ds, {.batch = 6, .shuffle = false}).order_settings();
  EXPECT_EQ(plain.size(), 4u);
  EXPECT_EQ(plain[1], (std::pair<std::string, std::string>{"shuffle", "0"}));
}

TEST(DataLoader, ReusesBuffersOfTheSameShape) {
  DataLoader loader(indexed_dataset(10), {.batch = 4, .seed = test_seed()});
  Batch b;
  ASSERT_TRUE(loader.next(b));
  const void* x = b.inputs.raw();
  const void* y = b.labels.raw();
  EXPECT_EQ(b.inputs.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(b.labels.shape(), (Shape{4}));
  ASSERT_TRUE(loader.next(b));
  EXPECT_EQ(b.inputs.raw(), x);
  EXPECT_EQ(b.labels.raw(), y);
  expect_rows_match_labels(b);
  ASSERT_TRUE(loader.next(b));  // the short last batch needs buffers of its own shape
  EXPECT_EQ(b.inputs.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(b.labels.shape(), (Shape{2}));
  expect_rows_match_labels(b);
  EXPECT_FALSE(loader.next(b));
  EXPECT_EQ(b.labels.shape(), (Shape{2}));  // untouched at the end of the epoch

  // A buffer of the right shape but the wrong dtype is replaced, not reinterpreted.
  loader.start_epoch(1);
  b.labels = Tensor::zeros({4}, DType::kI32);
  ASSERT_TRUE(loader.next(b));
  EXPECT_EQ(b.labels.dtype(), DType::kI64);
  expect_rows_match_labels(b);
}

TEST(DataLoader, PinnedBuffersNeedCuda) {
  DataLoader loader(indexed_dataset(4), {.batch = 2, .pinned = true});
  Batch b;
  if (!GPUDL_WITH_CUDA) {
    EXPECT_THROW(loader.next(b), DeviceError);
    return;
  }
  const std::string reason = Device::cuda_unavailable_reason();
  if (!reason.empty()) GTEST_SKIP() << "no CUDA device: " << reason;
  ASSERT_TRUE(loader.next(b));
  EXPECT_TRUE(b.inputs.is_pinned());
  EXPECT_TRUE(b.labels.is_pinned());
  expect_rows_match_labels(b);
}

TEST(DataLoader, EmptyDataSetHasNoBatches) {
  DataLoader loader(TensorDataset(), {.batch = 3, .seed = test_seed()});
  EXPECT_EQ(loader.batches_per_epoch(), 0);
  EXPECT_TRUE(loader.order().empty());
  Batch b;
  EXPECT_FALSE(loader.next(b));
}

}  // namespace
}  // namespace gpudl::data
