// Safetensors checkpoints: round trips, the exact byte layout, atomic saving, every malformed
// file the loader rejects, and a reading by an independent (Python) parser.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "gpudl/core/io/safetensors.h"
#include "test_util.h"

namespace gpudl {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// The 8-byte little-endian length followed by the header and the data, unpadded: how a
// careless (but valid) writer might lay a file out.
std::string make_file(const std::string& header, const std::string& data) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes += static_cast<char>((static_cast<std::uint64_t>(header.size()) >> (8 * i)) & 0xff);
  return bytes + header + data;
}

std::string le32(std::uint32_t v) {
  std::string s;
  for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

template <class T>
std::vector<std::uint16_t> bits16(const Tensor& t) {
  std::vector<std::uint16_t> out;
  for (const T& v : t.to_vector<T>()) out.push_back(v.bits);
  return out;
}

// Each test works in a fresh directory of its own, removed afterwards.
class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "gpudl_safetensors_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    ::chmod(dir_.c_str(), 0700);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string file(const std::string& name) const { return dir_ + "/" + name; }

  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  // Loads `path`, expecting an IoError whose message is one line, starts with the function and
  // the file, and contains `expected`.
  void expect_load_error(const std::string& path, const std::string& expected) const {
    try {
      load_safetensors(path);
      ADD_FAILURE() << "expected IoError containing: " << expected;
    } catch (const IoError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind("load_safetensors: " + path + ": ", 0), 0u) << what;
      EXPECT_NE(what.find(expected), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }

  // Writes `bytes` to a file named `name` and expects loading it to fail as above.
  void expect_corrupt(const std::string& name, const std::string& bytes, const std::string& expected) const {
    const std::string path = file(name);
    write_bytes(path, bytes);
    expect_load_error(path, expected);
  }

  std::string dir_;
};

std::vector<NamedTensor> every_dtype() {
  std::vector<float> f32(24);
  for (std::size_t i = 0; i < f32.size(); ++i) f32[i] = static_cast<float>(i) * 0.37f - 4.0f;
  std::vector<Half> f16;
  std::vector<BFloat16> bf16;
  for (std::uint16_t b : {0x0000, 0x8000, 0x3c00, 0x7bff, 0x0001, 0xfc00}) f16.push_back(Half{b});
  for (std::uint16_t b : {0x3f80, 0xc000, 0x7f7f, 0x0001, 0xff80, 0x4049}) bf16.push_back(BFloat16{b});
  using I32 = std::numeric_limits<std::int32_t>;
  using I64 = std::numeric_limits<std::int64_t>;
  std::vector<std::uint8_t> u8(256);
  for (std::size_t i = 0; i < u8.size(); ++i) u8[i] = static_cast<std::uint8_t>(i);
  return {
      {"layer.0.weight", Tensor::from_vector(f32, {2, 3, 4})},
      {"half", Tensor::from_vector(f16, {2, 3})},
      {"brain", Tensor::from_vector(bf16, {6})},
      {"i32", Tensor::from_vector(std::vector<std::int32_t>{I32::min(), -1, 0, I32::max()}, {2, 2})},
      {"i64", Tensor::from_vector(std::vector<std::int64_t>{I64::min(), I64::max(), 42}, {3})},
      {"bytes", Tensor::from_vector(u8, {16, 16})},
      {"empty", Tensor::empty({0, 5}, DType::kF32)},
      {"scalar", Tensor::full({}, -3.5, DType::kF32)},
      {"scalar_u8", Tensor::full({}, 9.0, DType::kU8)},
      {"empty_i64", Tensor::empty({4, 0}, DType::kI64)},
  };
}

void expect_same_tensor(const NamedTensor& a, const NamedTensor& b) {
  EXPECT_EQ(a.first, b.first);
  ASSERT_EQ(a.second.dtype(), b.second.dtype()) << a.first;
  ASSERT_EQ(a.second.shape(), b.second.shape()) << a.first;
  EXPECT_EQ(b.second.device(), Device::cpu());
  switch (a.second.dtype()) {
    case DType::kF32: EXPECT_EQ(a.second.to_vector<float>(), b.second.to_vector<float>()) << a.first; break;
    case DType::kF16: EXPECT_EQ(bits16<Half>(a.second), bits16<Half>(b.second)) << a.first; break;
    case DType::kBF16: EXPECT_EQ(bits16<BFloat16>(a.second), bits16<BFloat16>(b.second)) << a.first; break;
    case DType::kI32:
      EXPECT_EQ(a.second.to_vector<std::int32_t>(), b.second.to_vector<std::int32_t>()) << a.first;
      break;
    case DType::kI64:
      EXPECT_EQ(a.second.to_vector<std::int64_t>(), b.second.to_vector<std::int64_t>()) << a.first;
      break;
    case DType::kU8:
      EXPECT_EQ(a.second.to_vector<std::uint8_t>(), b.second.to_vector<std::uint8_t>()) << a.first;
      break;
  }
}

TEST_F(Safetensors, RoundTripsEveryDtypeEmptyAndScalarTensors) {
  const auto tensors = every_dtype();
  const std::string path = file("all.safetensors");
  save_safetensors(path, tensors);
  const SafetensorsContents back = load_safetensors(path);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) expect_same_tensor(tensors[i], back.tensors[i]);
  EXPECT_TRUE(back.metadata.empty());
  ASSERT_NE(back.find("i64"), nullptr);
  EXPECT_EQ(back.find("i64")->to_vector<std::int64_t>()[2], 42);
  EXPECT_EQ(back.find("no such tensor"), nullptr);
  // Without metadata the header has no __metadata__ entry at all.
  EXPECT_EQ(read_bytes(path).find("__metadata__"), std::string::npos);
  EXPECT_EQ(listing(), (std::vector<std::string>{"all.safetensors"}));
}

TEST_F(Safetensors, RoundTripsMetadata) {
  const std::vector<std::pair<std::string, std::string>> metadata{
      {"format", "pt"},
      {"step", "1200"},
      {"quoted \"key\"", "line\nbreak\ttab"},
      {"empty", ""},
      {"\xc3\xa9t\xc3\xa9", "\xe2\x82\xac"}};
  const std::string path = file("meta.safetensors");
  save_safetensors(path, {{"w", Tensor::full({2}, 1.0)}}, metadata);
  const SafetensorsContents back = load_safetensors(path);
  EXPECT_EQ(back.metadata, metadata);
  EXPECT_EQ(back.metadata_value("step"), "1200");
  EXPECT_EQ(back.metadata_value("quoted \"key\""), "line\nbreak\ttab");
  EXPECT_EQ(back.metadata_value("absent"), "");
  // Metadata alone, without tensors, is a valid file too.
  save_safetensors(path, {}, {{"only", "metadata"}});
  const SafetensorsContents only = load_safetensors(path);
  EXPECT_TRUE(only.tensors.empty());
  EXPECT_EQ(only.metadata_value("only"), "metadata");
}

// The bytes are spelled out by hand from the format description, so this proves the layout
// rather than that the writer agrees with the reader.
TEST_F(Safetensors, WritesExactlyTheDocumentedBytes) {
  const std::string path = file("exact.safetensors");
  save_safetensors(path,
                   {{"w", Tensor::from_vector(std::vector<float>{1.0f, -2.0f}, {2})},
                    {"b", Tensor::from_vector(std::vector<std::uint8_t>{7}, {})}},
                   {{"format", "gpudl"}});
  const std::string header =
      R"({"__metadata__":{"format":"gpudl"},)"
      R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"U8","shape":[],"data_offsets":[8,9]}})"
      "     ";  // 139 bytes of JSON + 5 spaces: the data starts at 8 + 144 = 152 = 19 * 8
  ASSERT_EQ(header.size(), 144u);
  const std::string length("\x90\0\0\0\0\0\0\0", 8);  // 144, little-endian u64
  const std::string data("\x00\x00\x80\x3f"   // 1.0f
                         "\x00\x00\x00\xc0"   // -2.0f
                         "\x07",              // 7
                         9);
  EXPECT_EQ(read_bytes(path), length + header + data);
}

TEST_F(Safetensors, AlignsTheDataSectionToEightBytes) {
  for (std::size_t name_length = 1; name_length <= 9; ++name_length) {
    const std::string path = file("align.safetensors");
    save_safetensors(path, {{std::string(name_length, 'n'), Tensor::full({3}, 2.0, DType::kI64)}});
    const std::string bytes = read_bytes(path);
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < 8; ++i) {
      n |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
    }
    EXPECT_EQ((8 + n) % 8, 0u) << name_length;
    EXPECT_EQ(bytes.size(), 8 + n + 24);
    EXPECT_TRUE(bytes[8 + n - 1] == ' ' || bytes[8 + n - 1] == '}');
    EXPECT_EQ(load_safetensors(path).tensors[0].second.to_vector<std::int64_t>(), (std::vector<std::int64_t>{2, 2, 2}));
  }
}

// A file laid out differently by another writer (no padding, header order unlike data order,
// an empty tensor at the end) loads, with tensors in the order their data lies.
TEST_F(Safetensors, LoadsOtherWritersLayouts) {
  const std::string header =
      R"({"second":{"dtype":"I32","shape":[1],"data_offsets":[4,8],"extra":"ignored"},)"
      R"("first":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
      R"("none":{"dtype":"BF16","shape":[0],"data_offsets":[8,8]},)"
      R"("__metadata__":{"k":"v"}})";
  const std::string path = file("foreign.safetensors");
  write_bytes(path, make_file(header, le32(0x40490fdbu) + le32(0xfffffffeu)));
  const SafetensorsContents c = load_safetensors(path);
  ASSERT_EQ(c.tensors.size(), 3u);
  EXPECT_EQ(c.tensors[0].first, "first");
  EXPECT_EQ(c.tensors[0].second.to_vector<float>(), (std::vector<float>{3.14159274f}));
  EXPECT_EQ(c.tensors[1].first, "second");
  EXPECT_EQ(c.tensors[1].second.to_vector<std::int32_t>(), (std::vector<std::int32_t>{-2}));
  EXPECT_EQ(c.tensors[2].first, "none");
  EXPECT_EQ(c.tensors[2].second.dtype(), DType::kBF16);
  EXPECT_EQ(c.tensors[2].second.numel(), 0);
  EXPECT_EQ(c.metadata_value("k"), "v");
}

TEST_F(Safetensors, RejectsBadNamesBeforeWritingAnything) {
  const std::string path = file("bad.safetensors");
  const Tensor t = Tensor::zeros({2});
  EXPECT_THROW(save_safetensors(path, {{"", t}}), ValueError);
  EXPECT_THROW(save_safetensors(path, {{"__metadata__", t}}), ValueError);
  EXPECT_THROW(save_safetensors(path, {{"w", Tensor()}}), ValueError);
  EXPECT_THROW(save_safetensors(path, {{"w", t}}, {{"k", "1"}, {"k", "2"}}), ValueError);
  try {
    save_safetensors(path, {{"w", t}}, {{"k", "\xff"}});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_EQ(std::string(e.what()),
              "save_safetensors: " + path + ": json: cannot write a string that is not valid UTF-8 (byte 0)");
  }
  try {
    save_safetensors(path, {{"a", t}, {"b", t}, {"a", t}});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_EQ(std::string(e.what()), "save_safetensors: " + path + ": duplicate tensor name 'a'");
  }
  EXPECT_TRUE(listing().empty());
}

// Saving over a directory fails at the rename: the directory stays, the temporary file goes.
TEST_F(Safetensors, SavingOverADirectoryFailsCleanly) {
  const std::string path = file("model.safetensors");
  ASSERT_TRUE(fs::create_directory(path));
  write_bytes(path + "/inside", "keep me");
  try {
    save_safetensors(path, {{"w", Tensor::full({4}, 1.0)}});
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("save_safetensors: " + path + ": renaming " + path + ".tmp-", 0), 0u) << what;
    EXPECT_NE(what.find("directory"), std::string::npos) << what;  // strerror: "Is a directory"
  }
  EXPECT_EQ(listing(), (std::vector<std::string>{"model.safetensors"}));
  EXPECT_EQ(read_bytes(path + "/inside"), "keep me");
}

// Lowers the file-size limit so writes fail part-way (EFBIG), as a full disk would, and
// restores it however the test ends.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);  // fail the write instead of killing the process
    rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    ok_ = ::setrlimit(RLIMIT_FSIZE, &lowered) == 0;
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = nullptr;
  bool ok_ = false;
};

TEST_F(Safetensors, FailedWriteLeavesTheOldFileIntact) {
  const std::string path = file("model.safetensors");
  save_safetensors(path, {{"w", Tensor::full({4}, 1.0)}}, {{"version", "old"}});
  const std::string old_bytes = read_bytes(path);
  {
    FileSizeLimit limit(4096);
    ASSERT_TRUE(limit.ok());
    try {
      save_safetensors(path, {{"w", Tensor::full({100000}, 2.0)}}, {{"version", "new"}});
      FAIL() << "expected IoError";
    } catch (const IoError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind("save_safetensors: " + path + ": ", 0), 0u) << what;
      EXPECT_NE(what.find(".tmp-"), std::string::npos) << what;
      EXPECT_NE(what.find("File too large"), std::string::npos) << what;
    }
  }
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(load_safetensors(path).metadata_value("version"), "old");
  EXPECT_EQ(listing(), (std::vector<std::string>{"model.safetensors"}));
}

TEST_F(Safetensors, UnwritableDirectoryFailsCleanly) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root, which ignores directory permissions";
  const std::string path = file("model.safetensors");
  save_safetensors(path, {{"w", Tensor::full({4}, 1.0)}});
  const std::string old_bytes = read_bytes(path);
  ASSERT_EQ(::chmod(dir_.c_str(), 0500), 0);
  try {
    save_safetensors(path, {{"w", Tensor::full({4}, 2.0)}});
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("save_safetensors: " + path + ": creating temporary file " + path + ".tmp-", 0), 0u) << what;
    EXPECT_NE(what.find("Permission denied"), std::string::npos) << what;
  }
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(listing(), (std::vector<std::string>{"model.safetensors"}));
}

TEST_F(Safetensors, MissingShortAndOversizedFilesNameTheProblem) {
  const std::string missing = file("missing.safetensors");
  try {
    load_safetensors(missing);
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "load_safetensors: " + missing + ": cannot open: No such file or directory");
  }
  const std::string short_file = file("short.safetensors");
  write_bytes(short_file, std::string("\x05\0\0\0\0", 5));
  try {
    load_safetensors(short_file);
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()),
              "load_safetensors: " + short_file + ": file is 5 bytes, shorter than the 8-byte header length");
  }
  std::string past_end = make_file("{}", "");
  past_end[0] = 40;
  expect_corrupt("past_end.safetensors", past_end,
                 "header length 40 at offset 0 runs past the end of the file (10 bytes, so at most 2)");
  std::string huge = make_file("{}", "");
  huge[3] = 0x10;  // 0x10000002 bytes, about 268 MB
  expect_corrupt("huge.safetensors", huge, "header length 268435458 at offset 0 exceeds the limit of 100000000 bytes");
  expect_load_error(dir_, "is a directory");
}

TEST_F(Safetensors, MalformedHeadersNameTheFileAndOffset) {
  expect_corrupt("json.safetensors", make_file(R"({"w":{"dtype":"F32",)", ""),
                 "malformed JSON header at file offset 28: json: unexpected end of input at offset 20 of the header");
  expect_corrupt("empty_header.safetensors", make_file("", ""), "malformed JSON header at file offset 8");
  expect_corrupt("array.safetensors", make_file("[]", ""), "header at offset 8 is a JSON array, expected an object");
  expect_corrupt("entry.safetensors", make_file(R"({"w":[1]})", ""),
                 "tensor 'w': expected an object with dtype, shape and data_offsets, got array");
  expect_corrupt("dtype.safetensors",
                 make_file(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", std::string(8, '\0')),
                 "tensor 'w': unknown dtype \"F64\", expected F32, F16, BF16, I32, I64 or U8");
  // A name with a control byte is escaped, keeping the message on one line.
  expect_corrupt("newline.safetensors",
                 make_file(R"({"a\nb":{"dtype":"F64","shape":[],"data_offsets":[0,8]}})", std::string(8, '\0')),
                 "tensor 'a\\x0ab': unknown dtype");
  expect_corrupt("no_dtype.safetensors", make_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')),
                 "tensor 'w': expected a string \"dtype\"");
  expect_corrupt("shape.safetensors",
                 make_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')),
                 "tensor 'w': expected \"shape\" to be an array of non-negative integers");
  expect_corrupt("shape2.safetensors",
                 make_file(R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", std::string(4, '\0')),
                 "tensor 'w': expected \"shape\" to be an array of non-negative integers");
  expect_corrupt("offsets.safetensors",
                 make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", std::string(4, '\0')),
                 "tensor 'w': expected \"data_offsets\" to be [begin, end] with non-negative integers");
  expect_corrupt("reversed.safetensors",
                 make_file(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", std::string(4, '\0')),
                 "tensor 'w': data_offsets [4, 0] end before they begin");
  expect_corrupt("size.safetensors",
                 make_file(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", std::string(20, '\0')),
                 "tensor 'w': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] span 20");
  expect_corrupt("too_large.safetensors",
                 make_file(R"({"w":{"dtype":"I64","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", ""),
                 "tensor 'w': shape [4294967296, 4294967296, 0] is too large");
  expect_corrupt("metadata.safetensors", make_file(R"({"__metadata__":{"epoch":3}})", ""),
                 "__metadata__ entry \"epoch\" is integer, expected a string");
  expect_corrupt("metadata2.safetensors", make_file(R"({"__metadata__":"x"})", ""),
                 "__metadata__ is string, expected an object of strings");
}

TEST_F(Safetensors, BadDataSectionsNameTheFileAndOffset) {
  const std::string two = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_corrupt("truncated.safetensors", make_file(two, std::string(10, '\0')),
                 "tensor 'b': data_offsets [4, 12] end at offset " + std::to_string(8 + two.size() + 12) +
                     ", past the end of the file (" + std::to_string(8 + two.size() + 10) +
                     " bytes): truncated data or bad offsets");
  expect_corrupt("overlap.safetensors",
                 make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                           std::string(12, '\0')),
                 "tensor 'b': data_offsets [4, 12] overlap tensor 'a' at [0, 8]");
  const std::string gap = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  expect_corrupt("gap.safetensors", make_file(gap, std::string(12, '\0')),
                 "data section bytes [4, 8) at offset " + std::to_string(8 + gap.size() + 4) + " belong to no tensor");
  const std::string one = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_corrupt("trailing.safetensors", make_file(one, std::string(7, '\0')),
                 "data section bytes [4, 7) at offset " + std::to_string(8 + one.size() + 4) +
                     " belong to no tensor; expected the file to end there");
  // A real file cut short.
  const std::string path = file("cut.safetensors");
  save_safetensors(path, every_dtype());
  const std::string whole = read_bytes(path);
  write_bytes(path, whole.substr(0, whole.size() - 3));
  expect_load_error(path, "truncated data");
}

// Another program can read what we write: a short Python script with only json and struct
// (struct decodes f16 with 'e'; bf16 is widened to f32 by hand) prints every tensor.
TEST_F(Safetensors, PythonCanReadTheFile) {
  if (std::system("python3 -c 'import json, struct' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 is not available";
  }
  const std::string path = file("py.safetensors");
  save_safetensors(path,
                   {{"f32", Tensor::from_vector(std::vector<float>{1.5f, -2.25f, 0.0f, 1024.0f}, {2, 2})},
                    {"f16", Tensor::from_vector(std::vector<Half>{{0x3800}, {0xbc00}, {0x7bff}}, {3})},
                    {"bf16", Tensor::from_vector(std::vector<BFloat16>{{0x3f80}, {0xc040}}, {2})},
                    {"i32", Tensor::from_vector(std::vector<std::int32_t>{-2147483647 - 1, 2147483647}, {2})},
                    {"i64", Tensor::from_vector(std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min(),
                                                                          std::numeric_limits<std::int64_t>::max()},
                                                {2})},
                    {"u8", Tensor::from_vector(std::vector<std::uint8_t>{255}, {})},
                    {"empty", Tensor::empty({0, 3})}},
                   {{"format", "gpudl"}, {"epoch", "3"}});
  const std::string script = file("read.py");
  write_bytes(script, R"PY(import json, struct, sys
blob = open(sys.argv[1], 'rb').read()
(n,) = struct.unpack('<Q', blob[:8])
assert (8 + n) % 8 == 0, 'data section not aligned'
header = json.loads(blob[8:8 + n].decode('utf-8'))
meta = header.pop('__metadata__', {})
data = blob[8 + n:]
codes = {'F32': 'f', 'F16': 'e', 'BF16': 'H', 'I32': 'i', 'I64': 'q', 'U8': 'B'}
lines, end = [], 0
for name, info in sorted(header.items(), key=lambda kv: kv[1]['data_offsets']):
    b, e = info['data_offsets']
    assert b == end, 'gap or overlap'
    end = e
    code = codes[info['dtype']]
    values = struct.unpack('<%d%s' % ((e - b) // struct.calcsize(code), code), data[b:e])
    if info['dtype'] == 'BF16':
        values = [struct.unpack('<f', struct.pack('<I', v << 16))[0] for v in values]
    lines.append(' '.join([name, info['dtype'], str(info['shape'])] + [repr(v) for v in values]))
assert end == len(data), 'data section not covered'
print('\n'.join(lines))
print(json.dumps(meta, sort_keys=True))
)PY");
  const std::string out = file("out.txt");
  const std::string command = "python3 '" + script + "' '" + path + "' > '" + out + "' 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << read_bytes(out);
  EXPECT_EQ(read_bytes(out),
            "f32 F32 [2, 2] 1.5 -2.25 0.0 1024.0\n"
            "f16 F16 [3] 0.5 -1.0 65504.0\n"
            "bf16 BF16 [2] 1.0 -3.0\n"
            "i32 I32 [2] -2147483648 2147483647\n"
            "i64 I64 [2] -9223372036854775808 9223372036854775807\n"
            "u8 U8 [] 255\n"
            "empty F32 [0, 3]\n"
            "{\"epoch\": \"3\", \"format\": \"gpudl\"}\n");
}

// GPU tensors are copied to the host for saving; skips where there is no device.
class SafetensorsGpu : public testing::GpuTest {};

TEST_F(SafetensorsGpu, SavesTensorsFromTheDevice) {
  std::string tmpl = ::testing::TempDir() + "gpudl_safetensors_gpu_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const std::string path = tmpl + "/gpu.safetensors";
  const std::vector<float> values{1, 2, 3, 4, 5, 6};
  save_safetensors(path, {{"w", Tensor::from_vector(values, {2, 3}, Device::cuda())},
                          {"n", Tensor::full({2}, 7.0, DType::kI64, Device::cuda())}});
  const SafetensorsContents back = load_safetensors(path);
  std::error_code ec;
  fs::remove_all(tmpl, ec);
  ASSERT_EQ(back.tensors.size(), 2u);
  EXPECT_EQ(back.tensors[0].second.to_vector<float>(), values);
  EXPECT_EQ(back.tensors[1].second.to_vector<std::int64_t>(), (std::vector<std::int64_t>{7, 7}));
}

}  // namespace
}  // namespace gpudl
