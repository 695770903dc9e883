// Data sets held in host memory and the DataLoader that cuts them into reproducible batches.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl::data {

enum class Split { kTrain, kTest };

// An in-memory labelled data set on the CPU: inputs (N, ...) f32, labels (N) i64. Copies share
// the tensors' memory, like Tensor itself.
class TensorDataset {
 public:
  // An empty data set (size() 0, undefined tensors).
  TensorDataset() = default;
  // Throws ValueError for an undefined or non-CPU tensor or a wrong dtype (inputs must be f32,
  // labels i64); ShapeError when labels is not 1-D, inputs has no first axis, or
  // inputs.dim(0) != labels.numel().
  TensorDataset(Tensor inputs, Tensor labels);

  std::int64_t size() const { return labels_.defined() ? labels_.dim(0) : 0; }
  const Tensor& inputs() const { return inputs_; }
  const Tensor& labels() const { return labels_; }
  // The inputs' shape without the first axis: [1, 28, 28] for MNIST. [] when empty.
  Shape sample_shape() const;

  // x <- (x - mean) / stddev over every input, in place, so other data sets sharing the
  // memory (take() views, copies) see it too. Throws ValueError unless stddev > 0.
  void normalize(float mean, float stddev);

  // The first `n` samples, sharing memory with this data set. Throws ValueError when n < 0
  // or n > size().
  TensorDataset take(std::int64_t n) const;

 private:
  Tensor inputs_;
  Tensor labels_;
};

// One step's data. From a DataLoader: inputs (B, ...) f32, labels (B) i64; other sources say
// what theirs hold (StreamBatches: (steps, B) i32 ids and their (steps, B) i64 next tokens).
struct Batch {
  Tensor inputs;
  Tensor labels;
  // Under data parallelism, the labels of this step's batch summed over every rank (0: not
  // known, taken as this batch's times the ranks), so each rank's gradient gets its share.
  std::int64_t global_size = 0;
};

// The settings that fix which batch comes when, by name and value ({"batch", "32"},
// {"shuffle", "1"}): a checkpoint records them, and a resume with any of them changed is
// refused by name, since it would train on another order of the data.
using OrderSettings = std::vector<std::pair<std::string, std::string>>;

// What the Trainer reads batches from: a fixed number of batches per epoch, batch k of epoch e
// always the same, so a run resumed at (epoch, k) sees what an uninterrupted one would. The
// DataLoader (labelled samples, shuffled or not) and StreamBatches (the parallel text streams
// of truncated BPTT, in stream order every epoch) implement it.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  BatchSource() = default;
  BatchSource(const BatchSource&) = default;
  BatchSource& operator=(const BatchSource&) = default;

  virtual std::int64_t batches_per_epoch() const = 0;
  // Fills `out` with batch `index` of epoch `epoch`, overwriting out's tensors in place when
  // they fit (so the caller must be done with them, asynchronous copies included) and
  // replacing them otherwise. Throws ValueError for a negative epoch or an index outside
  // [0, batches_per_epoch()).
  virtual void fill(std::int64_t epoch, std::int64_t index, Batch& out) = 0;
  // Whether epochs come in different orders.
  virtual bool shuffled() const = 0;
  virtual OrderSettings order_settings() const = 0;
  // Batch buffers in pinned host memory, for asynchronous copies to a GPU (the Trainer asks
  // for it when it trains on one). Sources that cannot pin ignore it.
  virtual void set_pinned(bool pinned) { (void)pinned; }
  // Data parallelism: from now on this source gives rank `rank` of `world` its disjoint part
  // of each batch (the same batch, cut over the ranks, for every rank). Returns false when the
  // source cannot be cut, and the caller must not train it on several ranks. Throws
  // ValueError unless 0 <= rank < world.
  virtual bool set_shard(int rank, int world) { return rank == 0 && world == 1; }
};

// Throws ValueError naming `what` unless 0 <= rank < world.
void check_shard(const char* what, int rank, int world);

struct LoaderOptions {
  std::int64_t batch = 64;
  bool shuffle = true;
  bool drop_last = false;
  std::uint64_t seed = 0;
  bool pinned = false;  // allocate batch buffers with Tensor::empty_pinned (for async GPU copies)
  // Data parallelism: `batch` samples for each of `world` ranks, this loader giving rank
  // `rank` its part. The global batch is batch x world, cut from the one order of the epoch
  // that every rank computes from the seed.
  int rank = 0;
  int world = 1;
};

// The batch arithmetic every loader shares, for `samples` samples under `options`: full
// global batches plus, unless drop_last, one smaller trailing batch (when it has a sample for
// every rank).
std::int64_t batches_per_epoch(std::int64_t samples, const LoaderOptions& options);
// Which positions of an epoch's order batch `index` gives this rank: [first, first + count),
// rows [r R / W, (r + 1) R / W) of the global batch's R samples (equal shares of a full batch,
// parts differing by one sample at most of a short one); global_count is R.
struct BatchSlice {
  std::int64_t first = 0, count = 0, global_count = 0;
};
BatchSlice batch_slice(std::int64_t samples, std::int64_t index, const LoaderOptions& options);
// batch, shuffle, drop_last, the sample count, (when shuffling) the seed and (with several)
// the ranks.
OrderSettings loader_order_settings(std::int64_t samples, const LoaderOptions& options);
// The order of `epoch` under `options`: shuffled_order when shuffling, else 0, 1, ...
std::vector<std::int64_t> epoch_order(std::int64_t samples, const LoaderOptions& options, std::int64_t epoch);

// Batches over a TensorDataset. The order of epoch e is a pure function of (seed, e): a
// Fisher-Yates shuffle driven by kernels::philox_block(seed, /*offset=*/e, block) words (the
// swap partner of i, for i from n-1 down to 1, is (uint64_t(word) * (i + 1)) >> 32, word k of
// the draw sequence being word k % 4 of block k / 4). So a run resumed with seek(epoch,
// position) sees exactly the batches an uninterrupted run would, and no state beyond those two
// numbers needs checkpointing. Not thread-safe.
class DataLoader : public BatchSource {
 public:
  // Keeps a copy of `dataset` (sharing its memory) and starts epoch 0. Throws ValueError when
  // options.batch < 1 (or, as start_epoch, for a data set too large to shuffle).
  DataLoader(const TensorDataset& dataset, LoaderOptions options);

  // Full global batches plus, unless drop_last, one smaller trailing batch (when it has a
  // sample for every rank).
  std::int64_t batches_per_epoch() const override;
  // options.batch x options.world.
  std::int64_t global_batch() const;
  // seek(epoch, index), then next(out); throws ValueError as seek does, and for
  // index == batches_per_epoch().
  void fill(std::int64_t epoch, std::int64_t index, Batch& out) override;
  bool shuffled() const override { return options_.shuffle; }
  // batch, shuffle, drop_last, the sample count, (when shuffling) the seed and (with several)
  // the ranks.
  OrderSettings order_settings() const override;
  void set_pinned(bool pinned) override { options_.pinned = pinned; }
  bool set_shard(int rank, int world) override;
  // Computes the order of `epoch` and rewinds to its first batch. Throws ValueError for a
  // negative epoch, or when shuffling more than 2^32 samples.
  void start_epoch(std::int64_t epoch);
  // Fills `out` with the next batch and returns true, or returns false (leaving `out` alone)
  // at the end of the epoch. out's tensors are overwritten in place when their shape and dtype
  // already match (and, with options.pinned, they are pinned), so the caller must be done with
  // the previous batch, asynchronous copies out of it included; otherwise they are replaced by
  // fresh ones. Throws DeviceError when options.pinned is set in a build without CUDA,
  // OutOfMemoryError when the buffers cannot be had.
  bool next(Batch& out);

  std::int64_t epoch() const { return epoch_; }
  // Batches delivered so far in this epoch.
  std::int64_t position() const { return position_; }
  // Resumes at batch `position` of `epoch`, as if start_epoch(epoch) and `position` calls to
  // next() had happened. Throws ValueError when epoch < 0 or position is outside
  // [0, batches_per_epoch()].
  void seek(std::int64_t epoch, std::int64_t position);

  // Sample indices of the current epoch, in delivery order.
  const std::vector<std::int64_t>& order() const { return order_; }
  const LoaderOptions& options() const { return options_; }
  const TensorDataset& dataset() const { return dataset_; }

 private:
  TensorDataset dataset_;
  LoaderOptions options_;
  std::int64_t epoch_ = 0;
  std::int64_t position_ = 0;
  std::vector<std::int64_t> order_;
};

// A host buffer for `shape` that a BatchSource's fill may overwrite: `t` itself when it already
// is one (pinned too, when `pinned`), else a fresh one. Throws as Tensor::empty(_pinned).
void ensure_buffer(Tensor& t, const Shape& shape, DType dtype, bool pinned);

// The order a shuffling DataLoader with `seed` gives epoch `epoch` of an n-sample data set.
// Throws ValueError for n < 0 or n > 2^32.
std::vector<std::int64_t> shuffled_order(std::int64_t n, std::uint64_t seed, std::uint64_t epoch);

}  // namespace gpudl::data
