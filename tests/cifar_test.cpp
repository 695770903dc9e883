// The CIFAR-10 reader (small files written here, errors, the real files) and the synthetic CIFAR set.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "gpudl/core/data/cifar.h"
#include "test_util.h"

namespace gpudl::data {
namespace {

namespace fs = std::filesystem;

using Bytes = std::vector<std::uint8_t>;

constexpr std::size_t kPixels = 3 * 32 * 32;

// One record: the label byte, then 3072 pixel bytes that differ by position and by `salt`.
Bytes record(std::uint8_t label, unsigned salt) {
  Bytes out{label};
  for (std::size_t p = 0; p < kPixels; ++p) out.push_back(static_cast<std::uint8_t>((p * 131 + salt * 7) % 256));
  return out;
}

Bytes records(const std::vector<std::uint8_t>& labels, unsigned salt) {
  Bytes out;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const Bytes r = record(labels[i], salt + static_cast<unsigned>(i));
    out.insert(out.end(), r.begin(), r.end());
  }
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
class CifarFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (fs::temp_directory_path() / "gpudl_cifar_XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr) << "mkdtemp failed";
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  std::string write(const std::string& name, const Bytes& bytes) const {
    const std::string p = path(name);
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    EXPECT_TRUE(f.good()) << "writing " << p;
    return p;
  }

  // data_batch_1.bin to data_batch_5.bin with the given record counts (labels cycling 0..9).
  void write_train(const std::array<int, 5>& counts) const {
    std::uint8_t label = 0;
    for (std::size_t b = 0; b < counts.size(); ++b) {
      std::vector<std::uint8_t> labels;
      for (int i = 0; i < counts[b]; ++i) labels.push_back(static_cast<std::uint8_t>(label++ % 10));
      write("data_batch_" + std::to_string(b + 1) + ".bin", records(labels, static_cast<unsigned>(10 * b)));
    }
  }

  std::string dir_;
};

// Every pixel of `ds` equals its byte in `bytes` (records as written) divided by 255.
void expect_pixels(const TensorDataset& ds, const Bytes& bytes) {
  const std::vector<float> x = ds.inputs().to_vector<float>();
  ASSERT_EQ(x.size() * (kPixels + 1), bytes.size() * kPixels);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::size_t rec = i / kPixels, p = i % kPixels;
    ASSERT_EQ(x[i], static_cast<float>(bytes[rec * (kPixels + 1) + 1 + p]) / 255.0f) << "element " << i;
  }
}

TEST_F(CifarFiles, ReadsHandBuiltRecordsExactly) {
  Bytes bytes = records({3, 0, 9}, 1);
  // Record 1: the first red, green and blue bytes and the last red byte, in file order.
  const std::size_t r1 = kPixels + 1;
  bytes[r1 + 1] = 255;          // R (0, 0)
  bytes[r1 + 1 + 1023] = 0;     // R (31, 31)
  bytes[r1 + 1 + 1024] = 51;    // G (0, 0)
  bytes[r1 + 1 + 2048] = 102;   // B (0, 0)
  bytes[r1 + 1 + 2048 + 33] = 204;  // B (1, 1)
  const TensorDataset ds = read_cifar10_batch(write("batch.bin", bytes));
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.inputs().dtype(), DType::kF32);
  EXPECT_EQ(ds.inputs().shape(), (Shape{3, 3, 32, 32}));
  EXPECT_EQ(ds.labels().dtype(), DType::kI64);
  EXPECT_EQ(ds.labels().to_vector<std::int64_t>(), (std::vector<std::int64_t>{3, 0, 9}));
  expect_pixels(ds, bytes);
  // The planes land on the channel axis: (record, channel, row, column).
  const std::vector<float> img = ds.inputs()[1].to_vector<float>();
  EXPECT_EQ(img[0 * 1024 + 0], 1.0f);
  EXPECT_EQ(img[0 * 1024 + 31 * 32 + 31], 0.0f);
  EXPECT_EQ(img[1 * 1024 + 0], 0.2f);
  EXPECT_EQ(img[2 * 1024 + 0], 0.4f);
  EXPECT_EQ(img[2 * 1024 + 1 * 32 + 1], 0.8f);
}

TEST_F(CifarFiles, LoadsBothSplitsInBatchOrder) {
  write_train({1, 2, 1, 1, 3});
  const Bytes test_bytes = records({7, 2}, 99);
  write("test_batch.bin", test_bytes);

  const TensorDataset train = cifar10(dir_, Split::kTrain);
  EXPECT_EQ(train.inputs().shape(), (Shape{8, 3, 32, 32}));
  EXPECT_EQ(train.labels().to_vector<std::int64_t>(), (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  Bytes train_bytes;
  std::uint8_t label = 0;
  const int counts[] = {1, 2, 1, 1, 3};
  for (unsigned b = 0; b < 5; ++b) {
    std::vector<std::uint8_t> labels;
    for (int i = 0; i < counts[b]; ++i) labels.push_back(label++);
    const Bytes part = records(labels, 10 * b);
    train_bytes.insert(train_bytes.end(), part.begin(), part.end());
  }
  expect_pixels(train, train_bytes);

  const TensorDataset test = cifar10(dir_, Split::kTest);
  EXPECT_EQ(test.inputs().shape(), (Shape{2, 3, 32, 32}));
  EXPECT_EQ(test.labels().to_vector<std::int64_t>(), (std::vector<std::int64_t>{7, 2}));
  expect_pixels(test, test_bytes);
}

TEST_F(CifarFiles, NamesTheMissingDirectoryOrFile) {
  const std::string gone = path("no-such-dir");
  EXPECT_EQ(error_of([&] { cifar10(gone, Split::kTrain); }), gone + ": cannot open: No such file or directory");
  const std::string file = write("a-file", {1});
  EXPECT_EQ(error_of([&] { cifar10(file, Split::kTest); }), file + ": cannot open: Not a directory");
  EXPECT_EQ(error_of([&] { cifar10(dir_, Split::kTest); }),
            path("test_batch.bin") + ": cannot open: No such file or directory");
  write("data_batch_1.bin", records({1}, 0));
  write("data_batch_2.bin", records({2}, 0));
  EXPECT_EQ(error_of([&] { cifar10(dir_, Split::kTrain); }),
            path("data_batch_3.bin") + ": cannot open: No such file or directory");
  fs::create_directory(path("test_batch.bin"));
  EXPECT_EQ(error_of([&] { cifar10(dir_, Split::kTest); }), path("test_batch.bin") + ": cannot open: Is a directory");
  EXPECT_EQ(error_of([&] { read_cifar10_batch(path("nothing")); }),
            path("nothing") + ": cannot open: No such file or directory");
}

TEST_F(CifarFiles, RejectsASizeThatIsNotWholeRecords) {
  Bytes bytes = records({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 0);
  bytes.pop_back();
  const std::string cut = write("cut.bin", bytes);
  EXPECT_EQ(error_of([&] { read_cifar10_batch(cut); }),
            cut + ": 30729 bytes is not a whole number of 3073-byte records (truncated?)");
  // In a split, the file at fault is named, and that before any other is converted.
  write_train({2, 2, 2, 2, 2});
  write("data_batch_4.bin", Bytes(3074, 1));
  EXPECT_EQ(error_of([&] { cifar10(dir_, Split::kTrain); }),
            path("data_batch_4.bin") + ": 3074 bytes is not a whole number of 3073-byte records (truncated?)");
}

TEST_F(CifarFiles, RejectsAnEmptyFile) {
  const std::string empty = write("empty.bin", {});
  EXPECT_EQ(error_of([&] { read_cifar10_batch(empty); }), empty + ": empty file, expected 3073-byte records");
  write("test_batch.bin", {});
  EXPECT_EQ(error_of([&] { cifar10(dir_, Split::kTest); }),
            path("test_batch.bin") + ": empty file, expected 3073-byte records");
}

TEST_F(CifarFiles, RejectsLabelsAboveNine) {
  const std::string bad = write("bad.bin", records({0, 1, 2, 3, 4, 12, 6}, 0));
  EXPECT_EQ(error_of([&] { read_cifar10_batch(bad); }), bad + ": label 12 in record 5 is outside 0..9");
  // Records are counted within the file, not across the split.
  write_train({3, 3, 3, 3, 3});
  write("data_batch_2.bin", records({9, 10}, 0));
  EXPECT_EQ(error_of([&] { cifar10(dir_, Split::kTrain); }),
            path("data_batch_2.bin") + ": label 10 in record 1 is outside 0..9");
}

TEST(CifarClassNames, AreTheTenOfficialNamesInLabelOrder) {
  EXPECT_EQ(cifar10_class_names(), (std::vector<std::string>{"airplane", "automobile", "bird", "cat", "deer", "dog",
                                                              "frog", "horse", "ship", "truck"}));
}

// The real data set, where GPUDL_DATA_DIR points at it. Set but incomplete is a failure: a
// run that asked for the real files must not pass without reading them.
TEST(CifarRealFiles, LoadsTheFullDataSet) {
  const char* root = std::getenv("GPUDL_DATA_DIR");
  if (root == nullptr) GTEST_SKIP() << "GPUDL_DATA_DIR is not set; the real CIFAR-10 files are not checked";
  const std::string dir = (fs::path(root) / "cifar-10-batches-bin").string();
  struct Expect {
    Split split;
    std::int64_t n;
    std::int64_t first_label;
    std::array<std::uint8_t, 3> first_red;  // the first three bytes of record 0's red plane
  };
  // Facts the official files are widely quoted with (the data README lists them too).
  for (const Expect& e :
       {Expect{Split::kTrain, 50000, 6, {59, 43, 50}}, Expect{Split::kTest, 10000, 3, {158, 159, 165}}}) {
    TensorDataset ds;
    try {
      ds = cifar10(dir, e.split);
    } catch (const Error& err) {
      FAIL() << "GPUDL_DATA_DIR is set but CIFAR-10 cannot be read: " << err.what();
    }
    ASSERT_EQ(ds.size(), e.n);
    EXPECT_EQ(ds.inputs().shape(), (Shape{e.n, 3, 32, 32}));
    const std::vector<std::int64_t> y = ds.labels().to_vector<std::int64_t>();
    EXPECT_EQ(y.front(), e.first_label);
    std::array<std::int64_t, 10> counts{};
    for (const std::int64_t label : y) {
      ASSERT_GE(label, 0);
      ASSERT_LE(label, 9);
      ++counts[static_cast<std::size_t>(label)];
    }
    for (std::size_t c = 0; c < counts.size(); ++c) EXPECT_EQ(counts[c], e.n / 10) << "class " << c;

    const float* x = ds.inputs().data<float>();
    for (std::size_t p = 0; p < 3; ++p) EXPECT_EQ(x[p], static_cast<float>(e.first_red[p]) / 255.0f) << "pixel " << p;
    const std::int64_t total = ds.inputs().numel();
    const auto [lo, hi] = std::minmax_element(x, x + total);
    EXPECT_EQ(*lo, 0.0f);
    EXPECT_EQ(*hi, 1.0f);
    if (e.split == Split::kTrain) {
      // The channel means that cifar10_augmentation() normalises with.
      const double expected[3] = {0.4914, 0.4822, 0.4465};
      for (std::int64_t c = 0; c < 3; ++c) {
        double sum = 0.0;
        for (std::int64_t i = 0; i < e.n; ++i) {
          const float* plane = x + (i * 3 + c) * 1024;
          for (std::int64_t p = 0; p < 1024; ++p) sum += plane[p];
        }
        // The JPEG-decoded records shift the means by well under 0.005 (data README).
        EXPECT_NEAR(sum / static_cast<double>(e.n * 1024), expected[c], 0.005) << "channel " << c;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// synthetic CIFAR

TEST(SyntheticCifar, IsAPureFunctionOfTheSeed) {
  const TensorDataset a = synthetic_cifar(50, 7), b = synthetic_cifar(50, 7), c = synthetic_cifar(50, 8);
  EXPECT_EQ(a.inputs().shape(), (Shape{50, 3, 32, 32}));
  EXPECT_EQ(a.inputs().to_vector<float>(), b.inputs().to_vector<float>());
  EXPECT_EQ(a.labels().to_vector<std::int64_t>(), b.labels().to_vector<std::int64_t>());
  EXPECT_NE(a.inputs().to_vector<float>(), c.inputs().to_vector<float>());
  EXPECT_NE(a.labels().to_vector<std::int64_t>(), c.labels().to_vector<std::int64_t>());
}

TEST(SyntheticCifar, IsBalancedAndInTheUnitRange) {
  const TensorDataset ds = synthetic_cifar(1003, testing::test_seed());
  std::array<std::int64_t, 10> counts{};
  for (const std::int64_t label : ds.labels().to_vector<std::int64_t>()) {
    ASSERT_GE(label, 0);
    ASSERT_LE(label, 9);
    ++counts[static_cast<std::size_t>(label)];
  }
  for (std::size_t c = 0; c < counts.size(); ++c) {
    EXPECT_EQ(counts[c], c < 3 ? 101 : 100) << "class " << c;  // 1003 = 10 * 100 + 3
  }
  const std::vector<float> x = ds.inputs().to_vector<float>();
  const auto [lo, hi] = std::minmax_element(x.begin(), x.end());
  EXPECT_GE(*lo, 0.0f);
  EXPECT_LE(*hi, 1.0f);
  // Not washed out: the images use most of the range, and not mostly at the clamps.
  EXPECT_LT(*lo, 0.1f);
  EXPECT_GT(*hi, 0.9f);
  const auto clamped = std::count_if(x.begin(), x.end(), [](float v) { return v == 0.0f || v == 1.0f; });
  EXPECT_LT(static_cast<double>(clamped), 0.01 * static_cast<double>(x.size()));
}

TEST(SyntheticCifar, HandlesEmptyAndRejectsNegativeCounts) {
  EXPECT_EQ(synthetic_cifar(0, 1).inputs().shape(), (Shape{0, 3, 32, 32}));
  EXPECT_THROW(synthetic_cifar(-1, 1), ValueError);
}

// Oriented energy of the grey image at class k's stripe frequency: |sum g(y, x) e^{-i k.r}|^2.
double stripe_energy(const float* img, int k) {
  const double pi = std::numbers::pi;
  const double angle = pi * (k % 5) / 5.0, period = k < 5 ? 4.0 : 7.0;
  const double kx = 2.0 * pi / period * std::cos(angle), ky = 2.0 * pi / period * std::sin(angle);
  double re = 0.0, im = 0.0;
  for (int y = 0; y < 32; ++y) {
    for (int x = 0; x < 32; ++x) {
      const double g = img[y * 32 + x] + img[1024 + y * 32 + x] + img[2048 + y * 32 + x];
      re += g * std::cos(kx * x + ky * y);
      im += g * std::sin(kx * x + ky * y);
    }
  }
  return re * re + im * im;
}

// Learnable, but not by template matching alone: the nearest class mean (what a linear model
// sees, roughly) is right well above chance yet far from always, and the stripes, which
// average out of the means, still name the class to a fixed quadratic feature.
TEST(SyntheticCifar, ClassesAreDistinguishableButNotTrivially) {
  // Fixed seeds: the bounds below are about these sets, not about luck.
  const TensorDataset train = synthetic_cifar(3000, 101), test = synthetic_cifar(1000, 202);
  constexpr std::size_t kDim = kPixels;
  const std::vector<float> xtr = train.inputs().to_vector<float>(), xte = test.inputs().to_vector<float>();
  const std::vector<std::int64_t> ytr = train.labels().to_vector<std::int64_t>();
  const std::vector<std::int64_t> yte = test.labels().to_vector<std::int64_t>();

  std::vector<double> means(10 * kDim, 0.0);
  std::array<double, 10> counts{};
  for (std::size_t i = 0; i < ytr.size(); ++i) {
    const auto k = static_cast<std::size_t>(ytr[i]);
    counts[k] += 1.0;
    for (std::size_t d = 0; d < kDim; ++d) means[k * kDim + d] += xtr[i * kDim + d];
  }
  for (std::size_t k = 0; k < 10; ++k) {
    for (std::size_t d = 0; d < kDim; ++d) means[k * kDim + d] /= counts[k];
  }
  int nearest_mean_right = 0, stripes_right = 0;
  for (std::size_t i = 0; i < yte.size(); ++i) {
    const float* img = xte.data() + i * kDim;
    std::size_t best_mean = 0, best_stripe = 0;
    double best_dist = std::numeric_limits<double>::infinity(), best_energy = -1.0;
    for (std::size_t k = 0; k < 10; ++k) {
      double dist = 0.0;
      for (std::size_t d = 0; d < kDim; ++d) {
        const double e = img[d] - means[k * kDim + d];
        dist += e * e;
      }
      if (dist < best_dist) {
        best_dist = dist;
        best_mean = k;
      }
      const double energy = stripe_energy(img, static_cast<int>(k));
      if (energy > best_energy) {
        best_energy = energy;
        best_stripe = k;
      }
    }
    nearest_mean_right += static_cast<std::int64_t>(best_mean) == yte[i];
    stripes_right += static_cast<std::int64_t>(best_stripe) == yte[i];
  }
  const double nearest_mean = nearest_mean_right / static_cast<double>(yte.size());
  const double stripes = stripes_right / static_cast<double>(yte.size());
  std::printf("synthetic CIFAR: nearest class mean %.3f, stripe energy %.3f on held-out images\n", nearest_mean,
              stripes);
  EXPECT_GT(nearest_mean, 0.3);   // chance is 0.1
  EXPECT_LT(nearest_mean, 0.75);  // the mean cannot see the stripes
  EXPECT_GT(stripes, 0.75);
}

}  // namespace
}  // namespace gpudl::data
