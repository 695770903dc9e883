// CIFAR-10 binary batches read with one-line IoErrors, and the synthetic CIFAR-style data set.
#include "gpudl/core/data/cifar.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "gpudl/kernels/philox.h"

namespace gpudl::data {

namespace {

constexpr std::int64_t kChannels = 3;
constexpr std::int64_t kSide = 32;
constexpr std::int64_t kPixels = kChannels * kSide * kSide;  // 3072 per image
constexpr std::int64_t kRecordBytes = 1 + kPixels;           // label byte first
constexpr std::int64_t kClasses = 10;
// Records converted per read: a few MiB of buffer however large the file.
constexpr std::int64_t kChunkRecords = 1024;

[[noreturn]] void fail(const std::string& path, const std::string& problem) { throw IoError(path + ": " + problem); }

struct CloseFile {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// An open batch file whose size has been checked, so the whole data set can be allocated
// (and every file's problems reported) before any pixel is converted.
struct BatchFile {
  std::string path;
  std::unique_ptr<std::FILE, CloseFile> file;
  std::int64_t records = 0;
};

BatchFile open_batch(const std::string& path) {
  BatchFile b;
  b.path = path;
  b.file.reset(std::fopen(path.c_str(), "rb"));
  if (b.file == nullptr) fail(path, "cannot open: " + std::string(std::strerror(errno)));
  struct stat st {};
  if (fstat(fileno(b.file.get()), &st) != 0) fail(path, "cannot read: " + std::string(std::strerror(errno)));
  // fopen happily opens a directory on Linux; the read would then fail less clearly.
  if (S_ISDIR(st.st_mode)) fail(path, "cannot open: " + std::string(std::strerror(EISDIR)));
  const auto bytes = static_cast<std::int64_t>(st.st_size);
  if (bytes == 0) fail(path, "empty file, expected 3073-byte records");
  if (bytes % kRecordBytes != 0) {
    fail(path, std::to_string(bytes) + " bytes is not a whole number of 3073-byte records (truncated?)");
  }
  b.records = bytes / kRecordBytes;
  return b;
}

// Converts b's records into x (records, 3, 32, 32) and y (records).
void read_batch(BatchFile& b, float* x, std::int64_t* y) {
  // One division per byte value instead of per pixel, with identical results.
  std::array<float, 256> scale{};
  for (std::size_t p = 0; p < scale.size(); ++p) scale[p] = static_cast<float>(p) / 255.0f;
  std::vector<std::uint8_t> buffer(static_cast<std::size_t>(std::min(b.records, kChunkRecords) * kRecordBytes));
  for (std::int64_t first = 0; first < b.records; first += kChunkRecords) {
    const std::int64_t count = std::min(kChunkRecords, b.records - first);
    const auto want = static_cast<std::size_t>(count * kRecordBytes);
    const std::size_t got = std::fread(buffer.data(), 1, want, b.file.get());
    if (got < want) {
      if (std::ferror(b.file.get())) fail(b.path, "cannot read: " + std::string(std::strerror(errno)));
      // The size was checked on open, so the file shrank while being read.
      fail(b.path, "truncated at byte " + std::to_string(first * kRecordBytes) + ": expected " + std::to_string(want) +
                       " bytes of records, got " + std::to_string(got));
    }
    for (std::int64_t r = 0; r < count; ++r) {
      const std::uint8_t* record = buffer.data() + r * kRecordBytes;
      const std::int64_t index = first + r;
      if (record[0] >= kClasses) {
        fail(b.path, "label " + std::to_string(record[0]) + " in record " + std::to_string(index) + " is outside 0..9");
      }
      y[index] = record[0];
      float* dst = x + index * kPixels;
      for (std::int64_t p = 0; p < kPixels; ++p) dst[p] = scale[record[1 + p]];
    }
  }
}

TensorDataset read_batches(std::vector<BatchFile>& files) {
  std::int64_t n = 0;
  for (const BatchFile& b : files) n += b.records;
  Tensor inputs = Tensor::empty({n, kChannels, kSide, kSide});
  Tensor labels = Tensor::empty({n}, DType::kI64);
  float* x = inputs.data<float>();
  std::int64_t* y = labels.data<std::int64_t>();
  for (BatchFile& b : files) {
    read_batch(b, x, y);
    x += b.records * kPixels;
    y += b.records;
    b.file.reset();  // at most one file's handle held past its use
  }
  return TensorDataset(std::move(inputs), std::move(labels));
}

// ---------------------------------------------------------------------------------------------
// synthetic CIFAR

// Philox subsequences of the synthetic set, far above any offset a DataLoader or Generator
// with the same seed reaches, so its shuffles and fills do not replay these draws.
constexpr std::uint64_t kLabelStream = 0x5C1F'A000'0000'0000ull;
constexpr std::uint64_t kParamStream = kLabelStream + 1;
constexpr std::uint64_t kNoiseStream = kLabelStream + 2;

constexpr double kBlobSigma = 4.0;     // Gaussian width of every blob, pixels
constexpr double kUpperRow = 13.0;     // centre row of the class blob for classes 0-4...
constexpr double kLowerRow = 18.0;     // ... and for classes 5-9,
constexpr double kRowJitter = 6.0;     // give or take this much, so the halves overlap
constexpr double kHueJitter = 0.04;    // of the hue circle, either way (14 degrees)
constexpr double kShortPeriod = 4.0;   // stripe period of classes 0-4, pixels
constexpr double kLongPeriod = 7.0;    // ... and of classes 5-9
constexpr double kStripeMin = 0.06;    // stripe amplitude, uniform in [min, min + range)
constexpr double kStripeRange = 0.10;
constexpr double kNoiseAmplitude = 0.06; // pixel noise, uniform in [-a, a)

// Full-saturation, full-value colour of hue h in [0, 1), one of r, g, b by `channel`.
double hue_channel(double h, int channel) {
  const double t = 6.0 * h;
  double v = 0.0;
  switch (channel) {
    case 0: v = std::abs(t - 3.0) - 1.0; break;
    case 1: v = 2.0 - std::abs(t - 2.0); break;
    default: v = 2.0 - std::abs(t - 4.0); break;
  }
  return std::clamp(v, 0.0, 1.0);
}

// exp(-(t - centre)^2 / (2 sigma^2)) for t = 0..31: a Gaussian blob is the outer product of
// two of these, 64 exponentials instead of 1024.
std::array<double, kSide> gaussian_profile(double centre) {
  std::array<double, kSide> g{};
  for (std::int64_t t = 0; t < kSide; ++t) {
    const double d = static_cast<double>(t) - centre;
    g[static_cast<std::size_t>(t)] = std::exp(-d * d / (2.0 * kBlobSigma * kBlobSigma));
  }
  return g;
}

// Image `i` of class `label` into x (3, 32, 32).
void synthesize(float* x, std::int64_t i, std::int64_t label, std::uint64_t seed) {
  std::array<double, 16> u{};  // per-image parameters, uniform in [0, 1)
  for (std::size_t j = 0; j < u.size(); j += 4) {
    const kernels::Philox4x32 r = kernels::philox_block(seed, kParamStream, 4 * static_cast<std::uint64_t>(i) + j / 4);
    for (std::size_t k = 0; k < 4; ++k) u[j + k] = kernels::uniform01(r.v[k]);
  }
  const double pi = std::numbers::pi;

  const double background = 0.35 + 0.30 * u[0];
  const std::array<double, 3> tint{0.06 * (u[1] - 0.5), 0.06 * (u[2] - 0.5), 0.06 * (u[3] - 0.5)};
  const std::int64_t family = label % 5;  // shared by classes k and k + 5
  const bool upper = label < 5;

  // Stripes: a plane wave along the class direction, random phase and strength.
  const double angle = pi * static_cast<double>(family) / 5.0;
  const double period = upper ? kShortPeriod : kLongPeriod;
  const double kx = 2.0 * pi / period * std::cos(angle), ky = 2.0 * pi / period * std::sin(angle);
  const double phase = 2.0 * pi * u[4];
  const double stripe_amp = kStripeMin + kStripeRange * u[5];

  // The class blob: the family's hue, jittered; anywhere across, and loosely in the upper or
  // lower half. The distractor: any colour, anywhere in the middle 20 x 20.
  const double hue = std::fmod(static_cast<double>(family) / 5.0 + kHueJitter * (2.0 * u[6] - 1.0) + 1.0, 1.0);
  const double cx = 7.5 + 16.0 * u[7];
  const double cy = (upper ? kUpperRow : kLowerRow) + kRowJitter * (2.0 * u[8] - 1.0);
  const double blob_amp = 0.20 + 0.15 * u[9];
  const std::array<double, kSide> bx = gaussian_profile(cx), by = gaussian_profile(cy);
  const std::array<double, kSide> dx = gaussian_profile(5.5 + 20.0 * u[10]), dy = gaussian_profile(5.5 + 20.0 * u[11]);
  const std::array<double, 3> distractor{u[12], u[13], u[14]};
  const double distractor_amp = 0.10 + 0.15 * u[15];

  // sin(kx x + ky y + phase) split into per-column and per-row factors.
  std::array<double, kSide> sx{}, cxs{}, sy{}, cys{};
  for (std::int64_t t = 0; t < kSide; ++t) {
    const auto s = static_cast<std::size_t>(t);
    sx[s] = std::sin(kx * static_cast<double>(t) + phase);
    cxs[s] = std::cos(kx * static_cast<double>(t) + phase);
    sy[s] = std::sin(ky * static_cast<double>(t));
    cys[s] = std::cos(ky * static_cast<double>(t));
  }

  for (int c = 0; c < kChannels; ++c) {
    const double blob_colour = 2.0 * hue_channel(hue, c) - 1.0;
    const double distractor_colour = 2.0 * distractor[static_cast<std::size_t>(c)] - 1.0;
    for (std::int64_t y = 0; y < kSide; ++y) {
      const auto ys = static_cast<std::size_t>(y);
      // Four noise values per Philox block: the blocks of one row of one channel.
      const std::uint64_t row_block =
          (static_cast<std::uint64_t>(i) * kPixels + static_cast<std::uint64_t>((c * kSide + y) * kSide)) / 4;
      for (std::int64_t xb = 0; xb < kSide; xb += 4) {
        const kernels::Philox4x32 r =
            kernels::philox_block(seed, kNoiseStream, row_block + static_cast<std::uint64_t>(xb / 4));
        for (std::int64_t j = 0; j < 4; ++j) {
          const std::int64_t xx = xb + j;
          const auto xs = static_cast<std::size_t>(xx);
          const double stripe = sx[xs] * cys[ys] + cxs[xs] * sy[ys];
          double v = background + tint[static_cast<std::size_t>(c)] + stripe_amp * stripe +
                     blob_amp * blob_colour * bx[xs] * by[ys] + distractor_amp * distractor_colour * dx[xs] * dy[ys];
          v += kNoiseAmplitude * (2.0 * kernels::uniform01(r.v[j]) - 1.0);
          x[(c * kSide + y) * kSide + xx] = static_cast<float>(std::clamp(v, 0.0, 1.0));
        }
      }
    }
  }
}

}  // namespace

TensorDataset read_cifar10_batch(const std::string& path) {
  std::vector<BatchFile> files;
  files.push_back(open_batch(path));
  return read_batches(files);
}

TensorDataset cifar10(const std::string& dir, Split split) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) throw IoError(dir + ": cannot open: " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) throw IoError(dir + ": cannot open: " + std::strerror(ENOTDIR));
  std::vector<std::string> names;
  if (split == Split::kTrain) {
    for (int b = 1; b <= 5; ++b) names.push_back("data_batch_" + std::to_string(b) + ".bin");
  } else {
    names.emplace_back("test_batch.bin");
  }
  std::vector<BatchFile> files;
  for (const std::string& name : names) files.push_back(open_batch((std::filesystem::path(dir) / name).string()));
  return read_batches(files);
}

std::vector<std::string> cifar10_class_names() {
  return {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
}

TensorDataset synthetic_cifar(std::int64_t n, std::uint64_t seed) {
  if (n < 0) throw ValueError("synthetic_cifar: negative image count " + std::to_string(n));
  if (n > (std::int64_t{1} << 32)) {
    throw ValueError("synthetic_cifar: " + std::to_string(n) + " images exceed the 2^32 its label shuffle supports");
  }
  // Class c for the positions where a shuffle put c, c + 10, c + 20, ...: balanced by
  // construction, in an order with no pattern.
  const std::vector<std::int64_t> order = shuffled_order(n, seed, kLabelStream);
  Tensor inputs = Tensor::empty({n, kChannels, kSide, kSide});
  Tensor labels = Tensor::empty({n}, DType::kI64);
  float* x = inputs.data<float>();
  std::int64_t* y = labels.data<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    y[i] = order[static_cast<std::size_t>(i)] % kClasses;
    synthesize(x + i * kPixels, i, y[i], seed);
  }
  return TensorDataset(std::move(inputs), std::move(labels));
}

}  // namespace gpudl::data
