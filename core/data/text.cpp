// Character corpora and the stream batches of truncated BPTT.
#include "gpudl/core/data/text.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace gpudl::data {
namespace {

std::string byte_name(unsigned char c) {
  char buf[16];
  if (c >= 0x20 && c < 0x7f) {
    std::snprintf(buf, sizeof buf, "'%c'", c);
  } else {
    std::snprintf(buf, sizeof buf, "0x%02x", c);
  }
  return buf;
}

}  // namespace

CharCorpus CharCorpus::from_file(const std::string& path) {
  // A directory opens as an empty stream on Linux; say what it is rather than "empty".
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw IoError(path + ": cannot open text file (" + std::strerror(EISDIR) + ")");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open text file (" + std::strerror(errno) + ")");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw IoError(path + ": read failed");
  return from_text(buffer.str(), path);
}

CharCorpus CharCorpus::from_text(std::string text, std::string origin) {
  if (text.empty()) throw ValueError(origin + ": the text is empty");
  CharCorpus c;
  c.origin_ = std::move(origin);
  c.text_ = std::move(text);
  bool seen[256] = {};
  for (char ch : c.text_) seen[static_cast<unsigned char>(ch)] = true;
  std::fill(std::begin(c.lookup_), std::end(c.lookup_), -1);
  for (int b = 0; b < 256; ++b) {
    if (!seen[b]) continue;
    c.lookup_[b] = static_cast<std::int32_t>(c.vocabulary_.size());
    c.vocabulary_.push_back(static_cast<char>(b));
  }
  if (c.vocabulary_.size() < 2) {
    throw ValueError(c.origin_ + ": the text holds a single distinct character; there is nothing to predict");
  }
  c.ids_.reserve(c.text_.size());
  for (char ch : c.text_) c.ids_.push_back(c.lookup_[static_cast<unsigned char>(ch)]);
  return c;
}

std::int32_t CharCorpus::id(char c) const {
  const std::int32_t v = lookup_[static_cast<unsigned char>(c)];
  if (v < 0) throw ValueError(origin_ + ": character " + byte_name(static_cast<unsigned char>(c)) + " is not in the vocabulary");
  return v;
}

std::string CharCorpus::decode(const std::vector<std::int32_t>& ids) const {
  std::string out;
  out.reserve(ids.size());
  for (std::int32_t v : ids) {
    if (v < 0 || v >= vocab_size()) {
      throw ValueError(origin_ + ": id " + std::to_string(v) + " is outside the vocabulary of " +
                       std::to_string(vocab_size()));
    }
    out.push_back(vocabulary_[static_cast<std::size_t>(v)]);
  }
  return out;
}

Tensor CharCorpus::vocabulary_tensor() const {
  std::vector<std::uint8_t> bytes(vocabulary_.begin(), vocabulary_.end());
  return Tensor::from_vector(bytes, {static_cast<std::int64_t>(bytes.size())});
}

void CharCorpus::check_vocabulary(const Tensor& saved, const std::string& checkpoint) const {
  if (saved.dtype() != DType::kU8 || saved.ndim() != 1) {
    throw ValueError(checkpoint + ": the vocabulary entry is not a u8 vector but " + saved.shape().str());
  }
  const std::vector<std::uint8_t> bytes = saved.to_vector<std::uint8_t>();
  if (bytes.size() != vocabulary_.size()) {
    throw ValueError(checkpoint + ": its vocabulary has " + std::to_string(bytes.size()) + " characters, the text " +
                     origin_ + " has " + std::to_string(vocabulary_.size()));
  }
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] != static_cast<unsigned char>(vocabulary_[i])) {
      throw ValueError(checkpoint + ": its vocabulary differs from that of " + origin_ + " at id " + std::to_string(i) +
                       " (" + byte_name(bytes[i]) + " there, " +
                       byte_name(static_cast<unsigned char>(vocabulary_[i])) + " here)");
    }
  }
}

StreamBatches::StreamBatches(const std::vector<std::int32_t>& ids, std::int64_t batch, std::int64_t steps)
    : ids_(ids), batch_(batch), steps_(steps) {
  if (batch_ < 1 || steps_ < 1) throw ValueError("StreamBatches: batch and steps must be >= 1");
  cut_streams();
}

void StreamBatches::cut_streams() {
  const std::int64_t streams = batch_ * world_;
  stream_length_ = static_cast<std::int64_t>(ids_.size()) / streams;
  chunks_ = stream_length_ > 0 ? (stream_length_ - 1) / steps_ : 0;
  if (chunks_ < 1) {
    throw ValueError("StreamBatches: " + std::to_string(ids_.size()) + " tokens are too few for " +
                     std::to_string(streams) + " streams of " + std::to_string(steps_ + 1) + " tokens");
  }
}

bool StreamBatches::set_shard(int rank, int world) {
  check_shard("StreamBatches::set_shard", rank, world);
  rank_ = rank;
  world_ = world;
  cut_streams();
  return true;
}

void StreamBatches::chunk(std::int64_t k, Tensor& inputs, Tensor& targets) const {
  if (k < 0 || k >= chunks_) {
    throw ValueError("StreamBatches: chunk " + std::to_string(k) + " of " + std::to_string(chunks_));
  }
  // A buffer is reused only when it is what this source would allocate (pinned when asked):
  // the Trainer's asynchronous copies rely on that.
  auto ensure = [&](Tensor& t, DType dtype) {
    if (t.defined() && t.shape() == Shape{steps_, batch_} && t.dtype() == dtype && t.device().is_cpu() &&
        (!pinned_ || t.is_pinned())) {
      return;
    }
    t = pinned_ ? Tensor::empty_pinned({steps_, batch_}, dtype) : Tensor::empty({steps_, batch_}, dtype);
  };
  ensure(inputs, DType::kI32);
  ensure(targets, DType::kI64);
  std::int32_t* in = inputs.data<std::int32_t>();
  std::int64_t* out = targets.data<std::int64_t>();
  for (std::int64_t t = 0; t < steps_; ++t) {
    for (std::int64_t b = 0; b < batch_; ++b) {
      // Ranks hold consecutive groups of `batch` streams out of batch x world.
      const std::size_t at = static_cast<std::size_t>((rank_ * batch_ + b) * stream_length_ + k * steps_ + t);
      in[t * batch_ + b] = ids_[at];
      out[t * batch_ + b] = ids_[at + 1];
    }
  }
}

void StreamBatches::fill(std::int64_t epoch, std::int64_t index, Batch& out) {
  if (epoch < 0) throw ValueError("StreamBatches: negative epoch " + std::to_string(epoch));
  chunk(index, out.inputs, out.labels);
  out.global_size = out.labels.numel() * world_;
}

OrderSettings StreamBatches::order_settings() const {
  OrderSettings s = {{"batch", std::to_string(batch_)},
          {"steps", std::to_string(steps_)},
          {"tokens", std::to_string(ids_.size())}};
  if (world_ > 1) s.emplace_back("ranks", std::to_string(world_));
  return s;
}

}  // namespace gpudl::data
