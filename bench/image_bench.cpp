// gpudl_bench's image cases: single-thread PNG and JPEG decoding from memory, and the
// ImageFolderLoader end to end on a temporary folder of PNG files, in images per second.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "bench_util.h"
#include "gpudl/core/data/image.h"
#include "gpudl/core/data/image_folder.h"

namespace bench {
namespace {

using gpudl::data::Image;

// Smooth gradients with a little noise: compresses roughly as photographs do, unlike pure
// noise (the worst case for both codecs) or flat colour (the best).
Image test_image(std::int64_t height, std::int64_t width, std::uint32_t seed) {
  Image image{.height = height, .width = width, .rgb = {}};
  image.rgb.resize(static_cast<std::size_t>(height * width * 3));
  std::uint32_t state = seed * 2654435761u + 1;
  for (std::int64_t y = 0; y < height; ++y) {
    for (std::int64_t x = 0; x < width; ++x) {
      const std::int64_t base[3] = {x * 255 / width, y * 255 / height, (x + y) * 127 / (height + width) + 64};
      for (int c = 0; c < 3; ++c) {
        state = state * 1664525u + 1013904223u;
        const std::int64_t v = base[c] + static_cast<std::int64_t>(state >> 28) - 8;
        image.rgb[static_cast<std::size_t>((y * width + x) * 3 + c)] =
            static_cast<std::uint8_t>(std::clamp<std::int64_t>(v, 0, 255));
      }
    }
  }
  return image;
}

// quality 0: PNG, else a JPEG of that quality.
void decode(benchmark::State& state, std::int64_t size, int quality) {
  const Image image = test_image(size, size, 1);
  const std::vector<std::uint8_t> bytes =
      quality == 0 ? gpudl::data::encode_png(image) : gpudl::data::encode_jpeg(image, quality);
  for (auto _ : state) {
    Image decoded = gpudl::data::decode_image(bytes.data(), bytes.size(), "bench");
    benchmark::DoNotOptimize(decoded.rgb.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
  state.SetLabel((quality == 0 ? std::string("PNG") : "JPEG q" + std::to_string(quality)) + " " +
                 std::to_string(size) + "x" + std::to_string(size) + " RGB, " + std::to_string(bytes.size()) +
                 " bytes");
}

// A folder tree written for one benchmark run and removed after it.
class TempImageFolder {
 public:
  TempImageFolder(int classes, int per_class, std::int64_t size) {
    root_ = std::filesystem::temp_directory_path() / ("gpudl_bench_images_" + std::to_string(getpid()));
    std::filesystem::remove_all(root_);
    for (int c = 0; c < classes; ++c) {
      const std::filesystem::path dir = root_ / ("class" + std::to_string(c));
      std::filesystem::create_directories(dir);
      for (int i = 0; i < per_class; ++i) {
        gpudl::data::write_image((dir / ("img" + std::to_string(i) + ".png")).string(),
                                 test_image(size, size, static_cast<std::uint32_t>(c * per_class + i)));
      }
    }
  }
  ~TempImageFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
  TempImageFolder(const TempImageFolder&) = delete;
  TempImageFolder& operator=(const TempImageFolder&) = delete;
  std::string root() const { return root_.string(); }

 private:
  std::filesystem::path root_;
};

// 512 PNGs of 32x32 in 4 classes, batches of 128 taken one after another across epochs: the
// loader's workers decode ahead, so this is their steady-state rate, file reads included.
void folder_loader(benchmark::State& state) {
  const TempImageFolder files(4, 128, 32);
  gpudl::data::ImageLoaderOptions options;
  options.loader.batch = 128;
  options.workers = static_cast<int>(state.range(0));
  gpudl::data::ImageFolderLoader loader(gpudl::data::ImageFolder(files.root()), options);
  const std::int64_t per_epoch = loader.batches_per_epoch();
  gpudl::data::Batch batch;
  std::int64_t step = 0;
  loader.fill(0, 0, batch);  // warm-up: starts the workers and the page cache
  for (auto _ : state) {
    ++step;
    loader.fill(step / per_epoch, step % per_epoch, batch);
    benchmark::DoNotOptimize(batch.inputs.raw());
  }
  state.SetItemsProcessed(state.iterations() * options.loader.batch);
  state.SetLabel("512 PNG 32x32 files, batch 128, " + std::to_string(options.workers) + " worker(s)");
}

}  // namespace

void register_image_benchmarks() {
  for (const auto& [name, size, quality] : {std::tuple{"png/32x32", 32, 0}, std::tuple{"jpeg_q95/32x32", 32, 95},
                                            std::tuple{"png/224x224", 224, 0},
                                            std::tuple{"jpeg_q90/224x224", 224, 90}}) {
    benchmark::RegisterBenchmark((std::string("image_decode/") + name).c_str(), decode, size, quality)
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark("image_folder_loader/png_32x32", folder_loader)
      ->ArgName("workers")
      ->Arg(1)
      ->Arg(2)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();  // the decoding happens on the loader's threads
}

}  // namespace bench
