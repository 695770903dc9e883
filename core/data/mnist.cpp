// IDX parsing over plain or gzip input with one-line IoErrors, and MNIST assembled from it.
#include "gpudl/core/data/mnist.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace gpudl::data {

namespace {

constexpr std::uint32_t kImagesMagic = 0x00000803;  // u8 (0x08), three dimensions
constexpr std::uint32_t kLabelsMagic = 0x00000801;  // u8 (0x08), one dimension
constexpr std::int64_t kMnistSide = 28;

// gzread takes an unsigned count and returns an int, so larger requests are split.
constexpr std::size_t kMaxChunk = std::size_t{1} << 24;
// A header may promise far more data than the file holds; growing the buffer as bytes
// actually arrive (reads of 64 KiB, doubling) keeps such a file from costing its promised size
// in memory, or the time to zero it (the IDX fuzz target ran at ~500 inputs/s when every
// read zeroed up to 16 MiB first, 8,400/s after).
constexpr std::size_t kInitialReserve = std::size_t{1} << 20;
constexpr std::size_t kFirstRead = std::size_t{1} << 16;

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// A file read front to back, decompressed when it starts with the gzip magic bytes; every
// failure becomes an IoError "<path>: <problem>".
class IdxInput {
 public:
  explicit IdxInput(std::string path) : path_(std::move(path)) {
    file_.reset(std::fopen(path_.c_str(), "rb"));
    if (file_ == nullptr) fail("cannot open: " + std::string(std::strerror(errno)));
    struct stat st {};
    // fopen happily opens a directory on Linux; the read would then fail less clearly.
    if (fstat(fileno(file_.get()), &st) == 0 && S_ISDIR(st.st_mode)) {
      fail("cannot open: " + std::string(std::strerror(EISDIR)));
    }
    std::array<unsigned char, 2> head{};
    const std::size_t got = std::fread(head.data(), 1, head.size(), file_.get());
    if (got < head.size() && std::ferror(file_.get())) fail("cannot read: " + std::string(std::strerror(errno)));
    if (got == 2 && head[0] == 0x1f && head[1] == 0x8b) {
      file_.reset();
      errno = 0;
      gz_.reset(gzopen(path_.c_str(), "rb"));
      if (gz_ == nullptr) {
        fail("cannot open: " + std::string(errno != 0 ? std::strerror(errno) : "out of memory"));
      }
      gzbuffer(gz_.get(), 1u << 17);  // far fewer read calls than zlib's 8 KiB default
    } else {
      std::rewind(file_.get());
    }
  }

  [[noreturn]] void fail(const std::string& problem) const { throw IoError(path_ + ": " + problem); }

  // Up to n bytes; fewer only at the end of the data.
  std::size_t read(void* dst, std::size_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    std::size_t total = 0;
    while (total < n) {
      const std::size_t want = std::min(n - total, kMaxChunk);
      const std::size_t got = gz_ != nullptr ? read_gz(out + total, want) : read_plain(out + total, want);
      total += got;
      if (got < want) break;
    }
    offset_ += total;
    return total;
  }

  // Exactly n bytes of `what`, or an error naming where they started and how many there were.
  void read_exact(void* dst, std::size_t n, const char* what) {
    const std::uint64_t start = offset_;
    const std::size_t got = read(dst, n);
    if (got < n) truncated(start, n, got, what);
  }

  // n bytes of `what` into a vector that grows only as the data arrives.
  std::vector<std::uint8_t> read_section(std::size_t n, const char* what) {
    const std::uint64_t start = offset_;
    std::vector<std::uint8_t> bytes;
    bytes.reserve(std::min(n, kInitialReserve));
    std::size_t chunk = kFirstRead;
    while (bytes.size() < n) {
      const std::size_t have = bytes.size();
      const std::size_t want = std::min(n - have, chunk);
      chunk = std::min(2 * chunk, kMaxChunk);
      bytes.resize(have + want);
      const std::size_t got = read(bytes.data() + have, want);
      bytes.resize(have + got);
      if (got < want) truncated(start, n, bytes.size(), what);
    }
    return bytes;
  }

  // Bytes past what the header accounts for mean the header and the file disagree.
  void expect_end() {
    unsigned char extra = 0;
    const std::uint64_t end = offset_;
    if (read(&extra, 1) != 0) {
      fail("unexpected data after byte " + std::to_string(end) + ", where the header says the file ends");
    }
  }

 private:
  std::size_t read_plain(unsigned char* dst, std::size_t n) {
    const std::size_t got = std::fread(dst, 1, n, file_.get());
    if (got < n && std::ferror(file_.get())) fail("cannot read: " + std::string(std::strerror(errno)));
    return got;
  }

  std::size_t read_gz(unsigned char* dst, std::size_t n) {
    const int got = gzread(gz_.get(), dst, static_cast<unsigned>(n));
    // A stream cut short is reported through gzerror with a short (not -1) return.
    if (got < 0 || static_cast<std::size_t>(got) < n) {
      int code = Z_OK;
      const char* message = gzerror(gz_.get(), &code);
      if (code != Z_OK) gz_fail(code, message);
    }
    return got < 0 ? 0 : static_cast<std::size_t>(got);
  }

  [[noreturn]] void gz_fail(int code, const char* message) const {
    if (code == Z_ERRNO) fail("cannot read: " + std::string(std::strerror(errno)));
    std::string text = message != nullptr ? message : "unknown error";
    // zlib prefixes its messages with the path it was opened with; ours already carries it.
    const std::string prefix = path_ + ": ";
    if (text.compare(0, prefix.size(), prefix) == 0) text.erase(0, prefix.size());
    fail("gzip error: " + text);
  }

  [[noreturn]] void truncated(std::uint64_t start, std::size_t expected, std::size_t got, const char* what) const {
    fail("truncated at byte " + std::to_string(start) + ": expected " + std::to_string(expected) + " bytes of " + what +
         ", got " + std::to_string(got));
  }

  struct CloseFile {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  struct CloseGz {
    void operator()(gzFile f) const { gzclose(f); }
  };

  std::string path_;
  // Owned by handles so that a constructor which throws half-way still closes what it opened.
  std::unique_ptr<std::FILE, CloseFile> file_;
  std::unique_ptr<gzFile_s, CloseGz> gz_;
  std::uint64_t offset_ = 0;  // uncompressed bytes consumed
};

void read_magic(IdxInput& in, std::uint32_t expected, const char* kind) {
  std::array<unsigned char, 4> b{};
  in.read_exact(b.data(), b.size(), "magic number");
  const std::uint32_t magic =
      (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
  if (magic != expected) in.fail("bad magic " + hex32(magic) + ", expected " + hex32(expected) + " (" + kind + ")");
}

// The header's extents (big-endian int32s) and their product, the number of data bytes.
std::vector<std::int64_t> read_dims(IdxInput& in, std::size_t ndim, std::int64_t& count) {
  std::vector<unsigned char> b(4 * ndim);
  in.read_exact(b.data(), b.size(), "dimensions");
  std::vector<std::int64_t> dims(ndim);
  std::string text;
  bool negative = false;
  for (std::size_t i = 0; i < ndim; ++i) {
    const std::uint32_t u = (std::uint32_t{b[4 * i]} << 24) | (std::uint32_t{b[4 * i + 1]} << 16) |
                            (std::uint32_t{b[4 * i + 2]} << 8) | b[4 * i + 3];
    dims[i] = static_cast<std::int32_t>(u);
    negative = negative || dims[i] < 0;
    text += (i == 0 ? "" : " x ") + std::to_string(dims[i]);
  }
  if (negative) in.fail("negative dimension in " + text);
  count = 1;
  for (const std::int64_t d : dims) {
    if (d != 0 && count > std::numeric_limits<std::int64_t>::max() / d) {
      in.fail("dimensions " + text + " are too large");
    }
    count *= d;
  }
  return dims;
}

std::string find_mnist_file(const std::string& dir, const std::string& name) {
  const std::string plain = (std::filesystem::path(dir) / name).string();
  std::error_code ec;
  if (std::filesystem::exists(plain, ec)) return plain;
  if (std::filesystem::exists(plain + ".gz", ec)) return plain + ".gz";
  throw IoError(plain + ": not found (with or without .gz)");
}

}  // namespace

Tensor read_idx_images(const std::string& path) {
  IdxInput in(path);
  read_magic(in, kImagesMagic, "IDX u8 images");
  std::int64_t count = 0;
  const std::vector<std::int64_t> dims = read_dims(in, 3, count);
  std::vector<std::uint8_t> pixels = in.read_section(static_cast<std::size_t>(count), "pixel data");
  in.expect_end();
  return Tensor::from_vector(pixels, Shape(dims));
}

Tensor read_idx_labels(const std::string& path) {
  IdxInput in(path);
  read_magic(in, kLabelsMagic, "IDX u8 labels");
  std::int64_t count = 0;
  const std::vector<std::int64_t> dims = read_dims(in, 1, count);
  const std::vector<std::uint8_t> bytes = in.read_section(static_cast<std::size_t>(count), "label data");
  in.expect_end();
  return Tensor::from_vector(std::vector<std::int64_t>(bytes.begin(), bytes.end()), Shape(dims));
}

TensorDataset mnist(const std::string& dir, Split split) {
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) throw IoError(dir + ": cannot open: " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) throw IoError(dir + ": cannot open: " + std::strerror(ENOTDIR));
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  const std::string images_path = find_mnist_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_mnist_file(dir, prefix + "-labels-idx1-ubyte");

  const Tensor images = read_idx_images(images_path);
  if (images.dim(1) != kMnistSide || images.dim(2) != kMnistSide) {
    throw IoError(images_path + ": expected 28 x 28 images, got " + std::to_string(images.dim(1)) + " x " +
                  std::to_string(images.dim(2)));
  }
  const Tensor labels = read_idx_labels(labels_path);
  const std::int64_t n = images.dim(0);
  if (labels.dim(0) != n) {
    throw IoError(dir + ": " + std::to_string(n) + " images but " + std::to_string(labels.dim(0)) + " labels");
  }
  const std::int64_t* y = labels.data<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    if (y[i] > 9) {
      throw IoError(labels_path + ": label " + std::to_string(y[i]) + " at index " + std::to_string(i) +
                    " is outside 0..9");
    }
  }

  // One division per byte value instead of per pixel, with identical results.
  std::array<float, 256> scale{};
  for (std::size_t p = 0; p < scale.size(); ++p) scale[p] = static_cast<float>(p) / 255.0f;
  Tensor inputs = Tensor::empty({n, 1, kMnistSide, kMnistSide});
  const std::uint8_t* src = images.data<std::uint8_t>();
  float* dst = inputs.data<float>();
  const std::int64_t total = inputs.numel();
  for (std::int64_t i = 0; i < total; ++i) dst[i] = scale[src[i]];
  return TensorDataset(std::move(inputs), labels);
}

}  // namespace gpudl::data
