// TensorDataset's checks and views, and the DataLoader's Philox shuffle and batch gathering.
#include "gpudl/core/data/data.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <utility>

#include "gpudl/kernels/philox.h"

namespace gpudl::data {

namespace {

void check_cpu_tensor(const Tensor& t, const char* role, DType dtype) {
  if (!t.defined()) throw ValueError(std::string("TensorDataset: ") + role + " tensor is undefined");
  if (!t.device().is_cpu()) {
    throw ValueError(std::string("TensorDataset: ") + role + " must be on the cpu, not " + t.device().str());
  }
  if (t.dtype() != dtype) {
    throw ValueError(std::string("TensorDataset: ") + role + " " + t.shape().str() + " has dtype " +
                     dtype_name(t.dtype()) + ", expected " + dtype_name(dtype));
  }
}

}  // namespace

void ensure_buffer(Tensor& t, const Shape& shape, DType dtype, bool pinned) {
  if (t.defined() && t.shape() == shape && t.dtype() == dtype && t.device().is_cpu() &&
      (!pinned || t.is_pinned())) {
    return;
  }
  t = pinned ? Tensor::empty_pinned(shape, dtype) : Tensor::empty(shape, dtype);
}

TensorDataset::TensorDataset(Tensor inputs, Tensor labels) {
  check_cpu_tensor(inputs, "inputs", DType::kF32);
  check_cpu_tensor(labels, "labels", DType::kI64);
  if (labels.ndim() != 1) throw ShapeError("TensorDataset: labels " + labels.shape().str() + " must be 1-D");
  if (inputs.ndim() == 0) throw ShapeError("TensorDataset: inputs [] must have a first (sample) axis");
  if (inputs.dim(0) != labels.numel()) {
    throw ShapeError("TensorDataset: inputs " + inputs.shape().str() + " and labels " + labels.shape().str() +
                     " differ in sample count");
  }
  inputs_ = std::move(inputs);
  labels_ = std::move(labels);
}

Shape TensorDataset::sample_shape() const {
  if (!inputs_.defined()) return Shape{};
  const std::vector<std::int64_t>& dims = inputs_.shape().dims();
  return Shape(std::vector<std::int64_t>(dims.begin() + 1, dims.end()));
}

void TensorDataset::normalize(float mean, float stddev) {
  if (!(stddev > 0.0f)) {  // also rejects NaN
    throw ValueError("TensorDataset::normalize: stddev must be > 0, got " + std::to_string(stddev));
  }
  if (!inputs_.defined()) return;
  float* x = inputs_.data<float>();
  const std::int64_t n = inputs_.numel();
  for (std::int64_t i = 0; i < n; ++i) x[i] = (x[i] - mean) / stddev;
}

TensorDataset TensorDataset::take(std::int64_t n) const {
  if (n < 0 || n > size()) {
    throw ValueError("TensorDataset::take: cannot take " + std::to_string(n) + " samples from " +
                     std::to_string(size()));
  }
  if (!inputs_.defined()) return TensorDataset();
  TensorDataset out;
  out.inputs_ = inputs_.slice(0, n);
  out.labels_ = labels_.slice(0, n);
  return out;
}

void check_shard(const char* what, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) {
    throw ValueError(std::string(what) + ": rank " + std::to_string(rank) + " of " + std::to_string(world) +
                     " ranks is not a shard (need 0 <= rank < world)");
  }
}

std::vector<std::int64_t> shuffled_order(std::int64_t n, std::uint64_t seed, std::uint64_t epoch) {
  if (n < 0) throw ValueError("shuffled_order: negative sample count " + std::to_string(n));
  // The multiply-shift below draws partners from 32-bit words, so it cannot reach further.
  if (n > (std::int64_t{1} << 32)) {
    throw ValueError("shuffled_order: " + std::to_string(n) + " samples exceed the 2^32 a shuffle supports");
  }
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::uint64_t k = 0;  // index into the draw sequence
  kernels::Philox4x32 block{};
  for (std::int64_t i = n - 1; i >= 1; --i, ++k) {
    if (k % 4 == 0) block = kernels::philox_block(seed, epoch, k / 4);
    const std::uint32_t word = block.v[k % 4];
    // Multiply-shift maps the word onto [0, i] without the modulo's division.
    const std::uint64_t scaled = static_cast<std::uint64_t>(word) * static_cast<std::uint64_t>(i + 1);
    const auto j = static_cast<std::int64_t>(scaled >> 32);
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  return order;
}

std::int64_t batches_per_epoch(std::int64_t samples, const LoaderOptions& options) {
  const std::int64_t g = options.batch * options.world;
  // A trailing batch too small to give every rank a sample is left out, as drop_last would.
  const bool trailing = samples % g != 0 && !options.drop_last && samples % g >= options.world;
  return samples / g + (trailing ? 1 : 0);
}

BatchSlice batch_slice(std::int64_t samples, std::int64_t index, const LoaderOptions& options) {
  const std::int64_t g = options.batch * options.world;
  const std::int64_t global_first = index * g;
  const std::int64_t global_count = std::min(g, samples - global_first);
  const std::int64_t first = global_first + global_count * options.rank / options.world;
  const std::int64_t count = global_first + global_count * (options.rank + 1) / options.world - first;
  return {first, count, global_count};
}

OrderSettings loader_order_settings(std::int64_t samples, const LoaderOptions& options) {
  OrderSettings s = {{"batch", std::to_string(options.batch)},
                     {"shuffle", options.shuffle ? "1" : "0"},
                     {"drop_last", options.drop_last ? "1" : "0"},
                     {"samples", std::to_string(samples)}};
  // Without a shuffle the seed orders nothing, and a change of it is harmless.
  if (options.shuffle) s.emplace_back("seed", std::to_string(options.seed));
  // A one-process run says nothing of ranks, as before data parallelism existed.
  if (options.world > 1) s.emplace_back("ranks", std::to_string(options.world));
  return s;
}

std::vector<std::int64_t> epoch_order(std::int64_t samples, const LoaderOptions& options, std::int64_t epoch) {
  if (options.shuffle) return shuffled_order(samples, options.seed, static_cast<std::uint64_t>(epoch));
  std::vector<std::int64_t> order(static_cast<std::size_t>(samples));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  return order;
}

DataLoader::DataLoader(const TensorDataset& dataset, LoaderOptions options)
    : dataset_(dataset), options_(options) {
  if (options_.batch < 1) {
    throw ValueError("DataLoader: batch must be >= 1, got " + std::to_string(options_.batch));
  }
  check_shard("DataLoader", options_.rank, options_.world);
  start_epoch(0);
}

std::int64_t DataLoader::global_batch() const { return options_.batch * options_.world; }

std::int64_t DataLoader::batches_per_epoch() const { return data::batches_per_epoch(dataset_.size(), options_); }

bool DataLoader::set_shard(int rank, int world) {
  check_shard("DataLoader::set_shard", rank, world);
  options_.rank = rank;
  options_.world = world;
  position_ = std::min(position_, batches_per_epoch());
  return true;
}

void DataLoader::start_epoch(std::int64_t epoch) {
  if (epoch < 0) throw ValueError("DataLoader::start_epoch: negative epoch " + std::to_string(epoch));
  order_ = epoch_order(dataset_.size(), options_, epoch);
  epoch_ = epoch;
  position_ = 0;
}

bool DataLoader::next(Batch& out) {
  if (position_ >= batches_per_epoch()) return false;
  const auto [first, count, global_count] = batch_slice(dataset_.size(), position_, options_);
  out.global_size = global_count;

  std::vector<std::int64_t> input_dims = dataset_.sample_shape().dims();
  const std::int64_t row = dataset_.sample_shape().numel();
  input_dims.insert(input_dims.begin(), count);
  ensure_buffer(out.inputs, Shape(std::move(input_dims)), DType::kF32, options_.pinned);
  ensure_buffer(out.labels, Shape{count}, DType::kI64, options_.pinned);

  const float* src_x = dataset_.inputs().data<float>();
  const std::int64_t* src_y = dataset_.labels().data<std::int64_t>();
  float* dst_x = out.inputs.data<float>();
  std::int64_t* dst_y = out.labels.data<std::int64_t>();
  const std::size_t row_bytes = static_cast<std::size_t>(row) * sizeof(float);
  for (std::int64_t b = 0; b < count; ++b) {
    const std::int64_t s = order_[static_cast<std::size_t>(first + b)];
    if (row_bytes > 0) std::memcpy(dst_x + b * row, src_x + s * row, row_bytes);
    dst_y[b] = src_y[s];
  }
  ++position_;
  return true;
}

void DataLoader::fill(std::int64_t epoch, std::int64_t index, Batch& out) {
  if (index == batches_per_epoch()) {
    throw ValueError("DataLoader::fill: batch " + std::to_string(index) + " of an epoch of " +
                     std::to_string(batches_per_epoch()));
  }
  seek(epoch, index);
  next(out);
}

OrderSettings DataLoader::order_settings() const { return loader_order_settings(dataset_.size(), options_); }

void DataLoader::seek(std::int64_t epoch, std::int64_t position) {
  if (epoch < 0) throw ValueError("DataLoader::seek: negative epoch " + std::to_string(epoch));
  if (position < 0 || position > batches_per_epoch()) {
    throw ValueError("DataLoader::seek: position " + std::to_string(position) + " is outside [0, " +
                     std::to_string(batches_per_epoch()) + "]");
  }
  if (epoch != epoch_) start_epoch(epoch);
  position_ = position;
}

}  // namespace gpudl::data
