// The character corpus and its stream batches: vocabulary, errors for bad files and for a
// checkpoint whose vocabulary does not match, and the layout truncated BPTT relies on.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "gpudl/core/data/text.h"

namespace gpudl::data {
namespace {

std::string temp_file(const std::string& name, const std::string& contents) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("gpudl_text_" + std::to_string(::getpid()) + "_" + name)).string();
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

template <class E, class Fn>
std::string message_of(Fn fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no exception of the expected type";
  return "";
}

TEST(CharCorpus, SortedByteVocabularyAndIds) {
  const CharCorpus c = CharCorpus::from_text("hello, world\n", "greeting");
  EXPECT_EQ(c.vocabulary(), std::string("\n ,dehlorw"));
  EXPECT_EQ(c.size(), 13);
  EXPECT_EQ(c.ids()[0], c.id('h'));
  EXPECT_EQ(c.decode(c.ids()), "hello, world\n");
  EXPECT_NE(message_of<ValueError>([&] { c.id('z'); }).find("'z'"), std::string::npos);
}

TEST(CharCorpus, MissingFileNamesThePath) {
  const std::string path = "/nonexistent/gpudl/corpus.txt";
  const std::string m = message_of<IoError>([&] { CharCorpus::from_file(path); });
  EXPECT_NE(m.find(path), std::string::npos) << m;
}

TEST(CharCorpus, AFolderIsNotTakenForAnEmptyText) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  EXPECT_EQ(message_of<IoError>([&] { CharCorpus::from_file(dir); }), dir + ": cannot open text file (Is a directory)");
}

TEST(CharCorpus, EmptyAndOneCharacterFilesAreRejected) {
  const std::string empty = temp_file("empty.txt", "");
  std::string m = message_of<ValueError>([&] { CharCorpus::from_file(empty); });
  EXPECT_NE(m.find(empty), std::string::npos) << m;
  EXPECT_NE(m.find("empty"), std::string::npos) << m;
  const std::string same = temp_file("same.txt", "aaaa");
  m = message_of<ValueError>([&] { CharCorpus::from_file(same); });
  EXPECT_NE(m.find("single distinct character"), std::string::npos) << m;
  std::remove(empty.c_str());
  std::remove(same.c_str());
}

TEST(CharCorpus, ReadsAFileByteForByte) {
  const std::string text = std::string("line one\r\nline two\t\xc3\xa9\n");
  const std::string path = temp_file("bytes.txt", text);
  const CharCorpus c = CharCorpus::from_file(path);
  EXPECT_EQ(c.decode(c.ids()), text);
  EXPECT_EQ(c.origin(), path);
  std::remove(path.c_str());
}

TEST(CharCorpus, CheckpointVocabularyMustMatch) {
  const CharCorpus a = CharCorpus::from_text("abcabc", "a.txt");
  const CharCorpus same = CharCorpus::from_text("cab", "same.txt");
  EXPECT_NO_THROW(same.check_vocabulary(a.vocabulary_tensor(), "ckpt.safetensors"));
  const CharCorpus longer = CharCorpus::from_text("abcd", "b.txt");
  std::string m = message_of<ValueError>([&] { longer.check_vocabulary(a.vocabulary_tensor(), "ckpt.safetensors"); });
  EXPECT_NE(m.find("ckpt.safetensors"), std::string::npos) << m;
  EXPECT_NE(m.find("3 characters"), std::string::npos) << m;
  const CharCorpus other = CharCorpus::from_text("abd", "c.txt");
  m = message_of<ValueError>([&] { other.check_vocabulary(a.vocabulary_tensor(), "ckpt.safetensors"); });
  EXPECT_NE(m.find("at id 2"), std::string::npos) << m;
  m = message_of<ValueError>([&] { other.check_vocabulary(Tensor::zeros({3}), "ckpt.safetensors"); });
  EXPECT_NE(m.find("not a u8 vector"), std::string::npos) << m;
}

TEST(StreamBatches, StreamsContinueFromChunkToChunk) {
  // 2 streams of 10 tokens: stream b is ids[10 b .. 10 b + 9]; chunks of 3 steps.
  std::vector<std::int32_t> ids(21);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(i);
  const StreamBatches s(ids, 2, 3);
  EXPECT_EQ(s.chunks(), 3);  // (10 - 1) / 3: every target inside its stream
  Tensor x, y;
  s.chunk(1, x, y);
  ASSERT_EQ(x.shape(), (Shape{3, 2}));
  EXPECT_EQ(x.to_vector<std::int32_t>(), (std::vector<std::int32_t>{3, 13, 4, 14, 5, 15}));
  EXPECT_EQ(y.to_vector<std::int64_t>(), (std::vector<std::int64_t>{4, 14, 5, 15, 6, 16}));
  EXPECT_THROW(s.chunk(3, x, y), ValueError);
  EXPECT_THROW(StreamBatches(ids, 8, 3), ValueError);  // 2 tokens per stream: no chunk of 3 + 1
}

// As a BatchSource every epoch reads the chunks in stream order; the settings that move the
// streams' starts are what a checkpoint records.
TEST(StreamBatches, FillsChunksAsABatchSource) {
  std::vector<std::int32_t> ids(21);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int32_t>(i);
  StreamBatches s(ids, 2, 3);
  BatchSource& source = s;
  EXPECT_EQ(source.batches_per_epoch(), 3);
  EXPECT_FALSE(source.shuffled());
  Tensor x, y;
  s.chunk(2, x, y);
  Batch b;
  source.fill(5, 2, b);
  EXPECT_EQ(b.inputs.to_vector<std::int32_t>(), x.to_vector<std::int32_t>());
  EXPECT_EQ(b.labels.to_vector<std::int64_t>(), y.to_vector<std::int64_t>());
  EXPECT_EQ(b.labels.dtype(), DType::kI64);
  const void* reused = b.inputs.raw();
  source.fill(0, 1, b);
  EXPECT_EQ(b.inputs.raw(), reused);  // same shape: overwritten in place
  EXPECT_EQ(b.inputs.to_vector<std::int32_t>(), (std::vector<std::int32_t>{3, 13, 4, 14, 5, 15}));
  // A buffer of the right shape but the wrong dtype is replaced, not reinterpreted.
  b.labels = Tensor::zeros({3, 2}, DType::kI32);
  source.fill(0, 1, b);
  EXPECT_EQ(b.labels.dtype(), DType::kI64);
  EXPECT_EQ(b.labels.to_vector<std::int64_t>(), (std::vector<std::int64_t>{4, 14, 5, 15, 6, 16}));
  EXPECT_THROW(source.fill(0, 3, b), ValueError);
  EXPECT_THROW(source.fill(-1, 0, b), ValueError);
  EXPECT_EQ(source.order_settings(), (OrderSettings{{"batch", "2"}, {"steps", "3"}, {"tokens", "21"}}));
}

}  // namespace
}  // namespace gpudl::data
