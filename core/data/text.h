// Character-level text corpora for language models: a byte vocabulary, the text as ids, a
// held-out tail, and the parallel streams that truncated backpropagation through time reads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpudl/core/data/data.h"
#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl::data {

// The bytes of a text, each a token. The vocabulary is the set of distinct bytes, sorted, so
// the same text always gives the same ids.
class CharCorpus {
 public:
  // Reads `path` whole. Throws IoError naming the path when it cannot be opened or read, and
  // ValueError naming it when it is empty or holds a single distinct byte (nothing to learn).
  static CharCorpus from_file(const std::string& path);
  // The same from text in memory; `origin` names it in messages.
  static CharCorpus from_text(std::string text, std::string origin);

  const std::string& origin() const { return origin_; }
  const std::string& vocabulary() const { return vocabulary_; }  // id -> byte
  std::int64_t vocab_size() const { return static_cast<std::int64_t>(vocabulary_.size()); }
  const std::vector<std::int32_t>& ids() const { return ids_; }
  std::int64_t size() const { return static_cast<std::int64_t>(ids_.size()); }

  // Id of byte c; throws ValueError naming the byte when it is not in the vocabulary.
  std::int32_t id(char c) const;
  std::string decode(const std::vector<std::int32_t>& ids) const;

  // The vocabulary as a u8 tensor, to store beside a model in a checkpoint.
  Tensor vocabulary_tensor() const;
  // Throws ValueError naming `checkpoint` and the first difference when `saved` (a checkpoint's
  // vocabulary_tensor) is not this corpus's vocabulary: a model's ids mean other bytes.
  void check_vocabulary(const Tensor& saved, const std::string& checkpoint) const;

 private:
  std::string origin_, text_, vocabulary_;
  std::vector<std::int32_t> ids_;
  std::int32_t lookup_[256] = {};
};

// Cuts a token sequence into `batch` contiguous streams, read `steps` tokens at a time: chunk
// k holds inputs (steps, batch) i32 and next-token targets (steps, batch) i64, and stream b of
// chunk k + 1 continues where stream b of chunk k stopped, so a recurrent layer's final state
// carries over (truncated BPTT). The last, partial chunk is dropped. As a BatchSource every
// epoch reads the chunks in order (the Trainer's hooks reset and carry the model's state);
// keeps a reference to `ids`, which must outlive it.
class StreamBatches : public BatchSource {
 public:
  // Throws ValueError when the sequence is too short for one chunk of steps + 1 tokens per stream.
  StreamBatches(const std::vector<std::int32_t>& ids, std::int64_t batch, std::int64_t steps);

  std::int64_t chunks() const { return chunks_; }
  std::int64_t batch() const { return batch_; }
  std::int64_t steps() const { return steps_; }
  // Chunk k's inputs and targets on the CPU, reusing the tensors when they fit. Throws
  // ValueError for k outside [0, chunks()).
  void chunk(std::int64_t k, Tensor& inputs, Tensor& targets) const;

  std::int64_t batches_per_epoch() const override { return chunks_; }
  // Chunk `index` (the same in every epoch) into out.inputs and out.labels. Throws ValueError
  // for a negative epoch or an index outside [0, chunks()).
  void fill(std::int64_t epoch, std::int64_t index, Batch& out) override;
  bool shuffled() const override { return false; }
  // batch, steps, the token count and (with several) the ranks: each moves every stream's start.
  OrderSettings order_settings() const override;
  void set_pinned(bool pinned) override { pinned_ = pinned; }
  // The sequence is cut into batch x world streams, and rank r reads streams [r batch,
  // (r + 1) batch). Throws ValueError as the constructor does when they get too short.
  bool set_shard(int rank, int world) override;

 private:
  void cut_streams();

  const std::vector<std::int32_t>& ids_;
  std::int64_t batch_, steps_, stream_length_ = 0, chunks_ = 0;
  int rank_ = 0, world_ = 1;
  bool pinned_ = false;
};

}  // namespace gpudl::data
