// cifar_images: writes CIFAR-10's binary batches out as an image-folder data set (OUT/train/<class>/
// and OUT/test/<class>/, one PNG or JPEG file per image), the layout cnn_cifar10 --data and
// predict read, for trying the image pipeline on known data.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "example_args.h"
#include "gpudl/core/data/cifar.h"
#include "gpudl/core/data/image.h"
#include "gpudl/gpudl.h"

namespace {

namespace fs = std::filesystem;

// Image i of `set` as 8-bit RGB: the binary set's [0, 1] floats are k / 255 exactly, so this
// rounding gives back the file's bytes.
gpudl::data::Image image_of(const float* x, std::int64_t i) {
  gpudl::data::Image image{.height = 32, .width = 32, .rgb = std::vector<std::uint8_t>(32 * 32 * 3)};
  const float* planes = x + i * 3 * 32 * 32;
  for (std::int64_t p = 0; p < 32 * 32; ++p) {
    for (std::int64_t c = 0; c < 3; ++c) {
      const float v = std::clamp(planes[c * 32 * 32 + p] * 255.0f + 0.5f, 0.0f, 255.0f);
      image.rgb[static_cast<std::size_t>(p * 3 + c)] = static_cast<std::uint8_t>(v);
    }
  }
  return image;
}

// Writes one split with `threads` threads; returns the bytes written.
std::uintmax_t write_split(const gpudl::data::TensorDataset& set, std::int64_t count, const fs::path& root,
                           const std::vector<std::string>& classes, const std::string& format, int quality,
                           int threads) {
  for (const std::string& name : classes) fs::create_directories(root / name);
  const float* x = set.inputs().data<float>();
  const std::int64_t* y = set.labels().data<std::int64_t>();
  std::atomic<std::int64_t> next{0};
  std::atomic<std::uintmax_t> bytes{0};
  auto work = [&] {
    for (std::int64_t i = next++; i < count; i = next++) {
      const gpudl::data::Image image = image_of(x, i);
      const std::vector<std::uint8_t> encoded =
          format == "png" ? gpudl::data::encode_png(image) : gpudl::data::encode_jpeg(image, quality);
      // Five digits keep the files of a class in the set's order when listed by name.
      char name[32];
      std::snprintf(name, sizeof name, "%05lld.%s", static_cast<long long>(i), format.c_str());
      const fs::path path = root / classes[static_cast<std::size_t>(y[i])] / name;
      std::ofstream out(path, std::ios::binary);
      out.write(reinterpret_cast<const char*>(encoded.data()), static_cast<std::streamsize>(encoded.size()));
      if (!out) throw gpudl::IoError(path.string() + ": cannot write");
      bytes += encoded.size();
    }
  };
  std::vector<std::thread> pool;
  std::exception_ptr error;
  std::mutex error_mutex;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      try {
        work();
      } catch (...) {
        const std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
        next = count;
      }
    });
  }
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return bytes;
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace gpudl;
  examples::Args args("cifar_images", "Writes CIFAR-10's binary batches as class-per-folder image files.");
  args.option("data", "",
              "CIFAR-10 binary folder, or 'synthetic' (the built-in CIFAR-style set, 2,000 + 400 images unless "
              "--limit); default $GPUDL_DATA_DIR/cifar-10-batches-bin, else ../shared/data/...")
      .option("out", "", "the data set root to write: OUT/train/<class>/NNNNN.png and OUT/test/<class>/... (required)")
      .option("format", "png", "png (lossless) or jpg")
      .option("quality", "95", "JPEG quality, 1-100")
      .option("limit", "0", "write only the first N images of each split (0: all)")
      .option("threads", "0", "encoding threads (0: one per core)");
  args.parse(argc, argv);
  const std::string format = args.choice("format", {"png", "jpg"});
  const std::int64_t quality = args.integer("quality", 1, 100);
  const std::int64_t limit = args.integer("limit");
  const std::int64_t threads_flag = args.integer("threads");
  args.require(threads_flag <= 64, "threads", "a thread count from 0 (one per core) to 64");
  args.require(!args.str("out").empty(), "out", "the folder to write the data set into");
  const int threads = threads_flag > 0 ? static_cast<int>(threads_flag)
                                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::string dir = examples::data_dir(args, "cifar-10-batches-bin");
  const std::vector<std::string> classes = data::cifar10_class_names();
  const auto start = std::chrono::steady_clock::now();
  std::uintmax_t bytes = 0;
  std::int64_t images = 0;
  for (const auto& [split, name] : {std::pair{data::Split::kTrain, "train"}, std::pair{data::Split::kTest, "test"}}) {
    const std::int64_t synthetic = limit > 0 ? limit : (split == data::Split::kTrain ? 2000 : 400);
    const data::TensorDataset set = dir == "synthetic" ? data::synthetic_cifar(synthetic, split == data::Split::kTrain ? 1 : 2)
                                                       : data::cifar10(dir, split);
    const std::int64_t count = limit > 0 ? std::min(limit, set.size()) : set.size();
    bytes += write_split(set, count, fs::path(args.str("out")) / name, classes, format, static_cast<int>(quality),
                         threads);
    images += count;
    std::printf("%s: %lld images\n", name, static_cast<long long>(count));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("wrote %lld %s files (%.1f MB) under %s in %.1f s\n", static_cast<long long>(images), format.c_str(),
              static_cast<double>(bytes) / 1e6, args.str("out").c_str(), seconds);
  return 0;
} catch (const std::exception& e) {
  return examples::fail("cifar_images", e);
}
