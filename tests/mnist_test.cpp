// The IDX reader on small plain and gzip files written here, its errors, and MNIST (real files too).
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "gpudl/core/data/mnist.h"
#include "test_util.h"

namespace gpudl::data {
namespace {

namespace fs = std::filesystem;

using Bytes = std::vector<std::uint8_t>;

void put_be32(Bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

// An IDX u8 image file: magic, the three extents, then `pixels` (which may disagree with them).
Bytes idx_images(std::uint32_t n, std::uint32_t rows, std::uint32_t cols, const Bytes& pixels) {
  Bytes out;
  put_be32(out, 0x00000803);
  put_be32(out, n);
  put_be32(out, rows);
  put_be32(out, cols);
  out.insert(out.end(), pixels.begin(), pixels.end());
  return out;
}

Bytes idx_labels(const Bytes& labels) {
  Bytes out;
  put_be32(out, 0x00000801);
  put_be32(out, static_cast<std::uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

// Pixel values that differ from image to image and from one position to the next.
Bytes pattern(std::size_t n, unsigned salt = 0) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>((i * 37 + salt) % 256);
  return out;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const IoError& e) {
    return e.what();
  }
  return "(no IoError)";
}

// Each test gets a fresh directory of its own, removed afterwards.
class IdxFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "gpudl_idx_XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr) << "mkdtemp failed";
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  std::string write_plain(const std::string& name, const Bytes& bytes) const {
    const std::string p = path(name);
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(f.good()) << "writing " << p;
    return p;
  }

  std::string write_gz(const std::string& name, const Bytes& bytes) const {
    const std::string p = path(name);
    gzFile f = gzopen(p.c_str(), "wb");
    EXPECT_NE(f, nullptr) << "gzopen " << p;
    if (f == nullptr) return p;
    if (!bytes.empty()) {
      EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
    }
    EXPECT_EQ(gzclose(f), Z_OK);
    return p;
  }

  Bytes read_raw(const std::string& p) const {
    std::ifstream f(p, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }

  std::string dir_;
};

TEST_F(IdxFiles, ReadsPlainImagesExactly) {
  const Bytes pixels = pattern(3 * 4 * 5);
  const Tensor t = read_idx_images(write_plain("img", idx_images(3, 4, 5, pixels)));
  EXPECT_EQ(t.dtype(), DType::kU8);
  EXPECT_EQ(t.shape(), (Shape{3, 4, 5}));
  EXPECT_EQ(t.to_vector<std::uint8_t>(), pixels);
}

TEST_F(IdxFiles, ReadsGzipImagesExactly) {
  const Bytes pixels = pattern(7 * 28 * 28, 11);
  const Tensor t = read_idx_images(write_gz("img.gz", idx_images(7, 28, 28, pixels)));
  EXPECT_EQ(t.shape(), (Shape{7, 28, 28}));
  EXPECT_EQ(t.to_vector<std::uint8_t>(), pixels);
}

TEST_F(IdxFiles, ReadsLabelsOfAnyByteValue) {
  const Bytes labels{0, 9, 3, 10, 255};
  const std::vector<std::int64_t> expected{0, 9, 3, 10, 255};
  for (const std::string& p : {write_plain("lab", idx_labels(labels)), write_gz("lab.gz", idx_labels(labels))}) {
    const Tensor t = read_idx_labels(p);
    EXPECT_EQ(t.dtype(), DType::kI64);
    EXPECT_EQ(t.shape(), (Shape{5}));
    EXPECT_EQ(t.to_vector<std::int64_t>(), expected) << p;
  }
}

TEST_F(IdxFiles, ReadsEmptySets) {
  EXPECT_EQ(read_idx_images(write_plain("img", idx_images(0, 28, 28, {}))).shape(), (Shape{0, 28, 28}));
  EXPECT_EQ(read_idx_labels(write_gz("lab.gz", idx_labels({}))).shape(), (Shape{0}));
}

TEST_F(IdxFiles, RejectsAWrongMagicNumber) {
  const std::string lab = write_plain("lab", idx_labels({1, 2}));
  EXPECT_EQ(error_of([&] { read_idx_images(lab); }),
            lab + ": bad magic 0x00000801, expected 0x00000803 (IDX u8 images)");
  const std::string img = write_gz("img.gz", idx_images(1, 2, 2, pattern(4)));
  EXPECT_EQ(error_of([&] { read_idx_labels(img); }),
            img + ": bad magic 0x00000803, expected 0x00000801 (IDX u8 labels)");
}

TEST_F(IdxFiles, RejectsATruncatedHeader) {
  const std::string empty = write_plain("empty", {});
  EXPECT_EQ(error_of([&] { read_idx_images(empty); }),
            empty + ": truncated at byte 0: expected 4 bytes of magic number, got 0");
  Bytes header = idx_images(60000, 28, 28, {});
  header.resize(10);
  const std::string short_dims = write_plain("short", header);
  EXPECT_EQ(error_of([&] { read_idx_images(short_dims); }),
            short_dims + ": truncated at byte 4: expected 12 bytes of dimensions, got 6");
  const std::string short_gz = write_gz("short.gz", Bytes{0, 0, 8, 1, 0, 0});
  EXPECT_EQ(error_of([&] { read_idx_labels(short_gz); }),
            short_gz + ": truncated at byte 4: expected 4 bytes of dimensions, got 2");
}

TEST_F(IdxFiles, RejectsTruncatedData) {
  const Bytes bytes = idx_images(60000, 28, 28, pattern(1000));
  for (const std::string& p : {write_plain("img", bytes), write_gz("img.gz", bytes)}) {
    EXPECT_EQ(error_of([&] { read_idx_images(p); }),
              p + ": truncated at byte 16: expected 47040000 bytes of pixel data, got 1000");
  }
  Bytes labels = idx_labels({1, 2, 3, 4});
  labels.pop_back();
  const std::string lab = write_plain("lab", labels);
  EXPECT_EQ(error_of([&] { read_idx_labels(lab); }),
            lab + ": truncated at byte 8: expected 4 bytes of label data, got 3");
}

TEST_F(IdxFiles, RejectsDataBeyondTheHeadersCount) {
  Bytes labels = idx_labels({1, 2, 3});
  labels.push_back(4);
  const std::string lab = write_gz("lab.gz", labels);
  EXPECT_EQ(error_of([&] { read_idx_labels(lab); }),
            lab + ": unexpected data after byte 11, where the header says the file ends");
}

TEST_F(IdxFiles, RejectsNegativeAndOverflowingDimensions) {
  const std::string neg = write_plain("neg", idx_images(0xffffffffu, 28, 28, {}));
  EXPECT_EQ(error_of([&] { read_idx_images(neg); }), neg + ": negative dimension in -1 x 28 x 28");
  const std::string big = write_plain("big", idx_images(0x7fffffffu, 0x7fffffffu, 0x7fffffffu, pattern(10)));
  EXPECT_EQ(error_of([&] { read_idx_images(big); }),
            big + ": dimensions 2147483647 x 2147483647 x 2147483647 are too large");
  // A plausible-looking header over a short file fails on the data, without allocating its claim.
  const std::string huge = write_plain("huge", idx_images(0x7fffffffu, 0x7fffffffu, 1, pattern(10)));
  EXPECT_EQ(error_of([&] { read_idx_images(huge); }),
            huge + ": truncated at byte 16: expected 4611686014132420609 bytes of pixel data, got 10");
}

TEST_F(IdxFiles, NamesAMissingOrUnreadableFile) {
  const std::string missing = path("nothing-here");
  EXPECT_EQ(error_of([&] { read_idx_images(missing); }), missing + ": cannot open: No such file or directory");
  EXPECT_EQ(error_of([&] { read_idx_labels(dir_); }), dir_ + ": cannot open: Is a directory");
}

TEST_F(IdxFiles, RejectsCorruptGzip) {
  const Bytes bytes = idx_labels({1, 2, 3, 4, 5, 6, 7, 8});
  const Bytes gz = read_raw(write_gz("good.gz", bytes));
  ASSERT_GT(gz.size(), 20u);

  // The CRC-32 of the contents is the 8 bytes' first half at the end of the member.
  Bytes bad_crc = gz;
  bad_crc[bad_crc.size() - 8] ^= 0xff;
  const std::string crc = write_plain("crc.gz", bad_crc);
  EXPECT_EQ(error_of([&] { read_idx_labels(crc); }), crc + ": gzip error: incorrect data check");

  // Cut inside the compressed stream: the decompressor runs out of input.
  const std::string cut = write_plain("cut.gz", Bytes(gz.begin(), gz.begin() + 14));
  EXPECT_EQ(error_of([&] { read_idx_labels(cut); }), cut + ": gzip error: unexpected end of file");

  // The gzip magic followed by garbage: zlib's wording varies, the prefix and one line do not.
  Bytes garbage{0x1f, 0x8b};
  const Bytes noise = pattern(200, 5);
  garbage.insert(garbage.end(), noise.begin(), noise.end());
  const std::string junk = write_plain("junk.gz", garbage);
  const std::string message = error_of([&] { read_idx_labels(junk); });
  EXPECT_EQ(message.rfind(junk + ": gzip error: ", 0), 0u) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

// 28 x 28 MNIST-format files under the test directory.
class MnistDir : public IdxFiles {
 protected:
  void write_split(const std::string& prefix, const Bytes& pixels, std::uint32_t n, const Bytes& labels, bool gz) {
    const Bytes img = idx_images(n, 28, 28, pixels);
    const Bytes lab = idx_labels(labels);
    if (gz) {
      write_gz(prefix + "-images-idx3-ubyte.gz", img);
      write_gz(prefix + "-labels-idx1-ubyte.gz", lab);
    } else {
      write_plain(prefix + "-images-idx3-ubyte", img);
      write_plain(prefix + "-labels-idx1-ubyte", lab);
    }
  }
};

TEST_F(MnistDir, LoadsBothSplitsScaledToTheUnitRange) {
  Bytes train_pixels = pattern(3 * 784, 1);
  train_pixels[0] = 0;
  train_pixels[1] = 255;
  write_split("train", train_pixels, 3, {5, 0, 9}, /*gz=*/false);
  write_split("t10k", pattern(2 * 784, 2), 2, {7, 2}, /*gz=*/true);

  const TensorDataset train = mnist(dir_, Split::kTrain);
  EXPECT_EQ(train.size(), 3);
  EXPECT_EQ(train.inputs().shape(), (Shape{3, 1, 28, 28}));
  EXPECT_EQ(train.labels().to_vector<std::int64_t>(), (std::vector<std::int64_t>{5, 0, 9}));
  const std::vector<float> x = train.inputs().to_vector<float>();
  ASSERT_EQ(x.size(), train_pixels.size());
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], static_cast<float>(train_pixels[i]) / 255.0f) << i;
  EXPECT_EQ(x[0], 0.0f);
  EXPECT_EQ(x[1], 1.0f);

  const TensorDataset test = mnist(dir_, Split::kTest);
  EXPECT_EQ(test.inputs().shape(), (Shape{2, 1, 28, 28}));
  EXPECT_EQ(test.labels().to_vector<std::int64_t>(), (std::vector<std::int64_t>{7, 2}));
}

TEST_F(MnistDir, RejectsMismatchedCounts) {
  write_split("train", pattern(3 * 784), 3, {1, 2}, /*gz=*/true);
  EXPECT_EQ(error_of([&] { mnist(dir_, Split::kTrain); }), dir_ + ": 3 images but 2 labels");
}

TEST_F(MnistDir, NamesTheMissingDirectoryOrFile) {
  const std::string gone = path("no-such-dir");
  EXPECT_EQ(error_of([&] { mnist(gone, Split::kTrain); }), gone + ": cannot open: No such file or directory");
  const std::string file = write_plain("a-file", {1});
  EXPECT_EQ(error_of([&] { mnist(file, Split::kTest); }), file + ": cannot open: Not a directory");
  write_plain("t10k-images-idx3-ubyte", idx_images(1, 28, 28, pattern(784)));
  EXPECT_EQ(error_of([&] { mnist(dir_, Split::kTest); }),
            path("t10k-labels-idx1-ubyte") + ": not found (with or without .gz)");
  EXPECT_EQ(error_of([&] { mnist(dir_, Split::kTrain); }),
            path("train-images-idx3-ubyte") + ": not found (with or without .gz)");
}

TEST_F(MnistDir, RejectsOtherImageSizesAndLabelsAboveNine) {
  write_plain("train-images-idx3-ubyte", idx_images(1, 32, 32, pattern(1024)));
  write_plain("train-labels-idx1-ubyte", idx_labels({1}));
  EXPECT_EQ(error_of([&] { mnist(dir_, Split::kTrain); }),
            path("train-images-idx3-ubyte") + ": expected 28 x 28 images, got 32 x 32");
  write_split("t10k", pattern(2 * 784), 2, {3, 12}, /*gz=*/true);
  EXPECT_EQ(error_of([&] { mnist(dir_, Split::kTest); }),
            path("t10k-labels-idx1-ubyte.gz") + ": label 12 at index 1 is outside 0..9");
}

// The real data set, where GPUDL_DATA_DIR points at it. Set but incomplete is a failure: a
// run that asked for the real files must not pass without reading them.
TEST(MnistRealFiles, LoadsTheFullDataSet) {
  const char* root = std::getenv("GPUDL_DATA_DIR");
  if (root == nullptr) GTEST_SKIP() << "GPUDL_DATA_DIR is not set; the real MNIST files are not checked";
  const std::string dir = (fs::path(root) / "mnist").string();
  struct Expect {
    Split split;
    std::int64_t n;
    std::int64_t min_count, max_count;  // per class
    std::int64_t first_label;           // a well-known fact about each file
  };
  for (const Expect& e : {Expect{Split::kTrain, 60000, 5000, 7000, 5}, Expect{Split::kTest, 10000, 800, 1200, 7}}) {
    TensorDataset ds;
    try {
      ds = mnist(dir, e.split);
    } catch (const Error& err) {
      FAIL() << "GPUDL_DATA_DIR is set but MNIST cannot be read: " << err.what();
    }
    ASSERT_EQ(ds.size(), e.n);
    EXPECT_EQ(ds.inputs().shape(), (Shape{e.n, 1, 28, 28}));
    const std::vector<float> x = ds.inputs().to_vector<float>();
    const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
    EXPECT_EQ(*lo, 0.0f);
    EXPECT_EQ(*hi, 1.0f);
    const std::vector<std::int64_t> y = ds.labels().to_vector<std::int64_t>();
    EXPECT_EQ(y.front(), e.first_label);
    std::array<std::int64_t, 10> counts{};
    for (const std::int64_t label : y) {
      ASSERT_GE(label, 0);
      ASSERT_LE(label, 9);
      ++counts[static_cast<std::size_t>(label)];
    }
    for (std::size_t c = 0; c < counts.size(); ++c) {
      EXPECT_GE(counts[c], e.min_count) << "class " << c;
      EXPECT_LE(counts[c], e.max_count) << "class " << c;
    }
  }
}

}  // namespace
}  // namespace gpudl::data
