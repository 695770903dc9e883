// PNG/JPEG decoding and encoding, resizing, ImageFolder listing and the worker-thread
// ImageFolderLoader: pixels as written (PNG exactly, JPEG within its loss), the loader's batches
// equal to the in-memory DataLoader's, bad files named or skipped, and a model trained on a
// folder of images the test writes.
#include "gpudl/core/data/image_folder.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gpudl/core/data/image.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/sequential.h"
#include "python_util.h"
#include "test_util.h"

namespace gpudl::data {
namespace {

namespace fs = std::filesystem;

// A smooth image (gradients and a low-frequency wave, so JPEG keeps it well) with a phase from
// `salt`, plus uniform noise of +-`noise` levels.
Image smooth_image(std::int64_t height, std::int64_t width, std::uint64_t salt, int noise_levels = 0) {
  std::mt19937_64 rng(salt);
  std::uniform_int_distribution<int> noise(-noise_levels, noise_levels);
  Image image{.height = height, .width = width, .rgb = {}};
  for (std::int64_t y = 0; y < height; ++y) {
    for (std::int64_t x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        const double v = 60.0 + 40.0 * c + 100.0 * static_cast<double>(x + y) / static_cast<double>(height + width) +
                         30.0 * std::sin(0.3 * static_cast<double>(x) + static_cast<double>(salt % 7));
        image.rgb.push_back(static_cast<std::uint8_t>(std::clamp(v + noise(rng), 0.0, 255.0)));
      }
    }
  }
  return image;
}

// Random bytes: the hardest case for PNG's filters, which must still round-trip exactly.
Image noise_image(std::int64_t height, std::int64_t width, std::uint64_t salt) {
  std::mt19937_64 rng(salt);
  Image image{.height = height, .width = width, .rgb = {}};
  for (std::int64_t i = 0; i < height * width * 3; ++i) image.rgb.push_back(static_cast<std::uint8_t>(rng()));
  return image;
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

class Images : public ::testing::Test {
 protected:
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  testing::ScratchDir scratch_{"gpudl_images"};
  const std::string& dir_ = scratch_.path();
};

TEST_F(Images, PngRoundTripsExactly) {
  for (const auto& [h, w] : std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {32, 32}, {17, 45}, {64, 3}}) {
    const Image image = noise_image(h, w, static_cast<std::uint64_t>(h * 100 + w));
    write_image(file("a.png"), image);
    const Image back = read_image(file("a.png"));
    EXPECT_EQ(back.height, h);
    EXPECT_EQ(back.width, w);
    EXPECT_EQ(back.rgb, image.rgb) << h << " x " << w;
  }
}

// JPEG is lossy: at quality 95 without chroma subsampling, a smooth image comes back within a
// few levels per channel (measured here: at most 2, mean 0.7), while a decoder or colour-order mistake is
// off by tens of levels.
TEST_F(Images, JpegRoundTripsWithinItsLoss) {
  const Image image = smooth_image(40, 56, 3);
  write_image(file("a.JPG"), image, 95);
  const Image back = read_image(file("a.JPG"));
  ASSERT_EQ(back.height, 40);
  ASSERT_EQ(back.width, 56);
  int worst = 0;
  double sum = 0.0;
  for (std::size_t i = 0; i < image.rgb.size(); ++i) {
    const int d = std::abs(int{back.rgb[i]} - int{image.rgb[i]});
    worst = std::max(worst, d);
    sum += d;
  }
  EXPECT_LE(worst, 6);
  EXPECT_LT(sum / static_cast<double>(image.rgb.size()), 1.5);
}

TEST_F(Images, BadFilesAreNamedInOneLine) {
  const std::vector<std::uint8_t> png = encode_png(noise_image(20, 20, 1));
  const std::vector<std::uint8_t> jpeg = encode_jpeg(smooth_image(64, 64, 2), 90);
  write_bytes(file("cut.png"), std::vector<std::uint8_t>(png.begin(), png.begin() + static_cast<long>(png.size() / 2)));
  write_bytes(file("cut.jpg"),
              std::vector<std::uint8_t>(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() / 2)));
  write_bytes(file("notes.txt"), {'h', 'e', 'l', 'l', 'o'});
  write_bytes(file("empty.png"), {});
  std::vector<std::uint8_t> flipped = png;
  flipped[png.size() / 2] ^= 0xff;  // a corrupt byte in the compressed data: its CRC fails
  write_bytes(file("flipped.png"), flipped);
  // Cut just before its 12-byte end chunk: every pixel is there, but the file is not whole.
  write_bytes(file("no_end.png"), std::vector<std::uint8_t>(png.begin(), png.end() - 12));
  for (const std::string name :
       {"cut.png", "cut.jpg", "notes.txt", "empty.png", "flipped.png", "no_end.png", "missing.png"}) {
    const std::string error = testing::error_of<IoError>([&] { (void)read_image(file(name)); });
    EXPECT_EQ(error.rfind(file(name) + ": ", 0), 0u) << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
  EXPECT_NE(testing::error_of<IoError>([&] { (void)read_image(file("notes.txt")); }).find("not a PNG or JPEG file"),
            std::string::npos);
  EXPECT_NE(testing::error_of<IoError>([&] { (void)read_image(file("cut.jpg")); }).find("corrupt JPEG"),
            std::string::npos);
}

TEST_F(Images, ResizeAndCrop) {
  Image flat{.height = 5, .width = 7, .rgb = std::vector<std::uint8_t>(5 * 7 * 3, 77)};
  for (const auto& [h, w] : std::vector<std::pair<std::int64_t, std::int64_t>>{{10, 14}, {2, 3}, {1, 1}, {5, 7}}) {
    const Image r = resize(flat, h, w);
    EXPECT_EQ(r.height, h);
    EXPECT_EQ(r.width, w);
    EXPECT_EQ(r.rgb, std::vector<std::uint8_t>(static_cast<std::size_t>(h * w * 3), 77));
  }
  // Halving averages each 2 x 2 block: that is bilinear sampling at the blocks' centres.
  Image ramp{.height = 2, .width = 4, .rgb = {}};
  for (int v : {0, 10, 20, 30, 40, 50, 60, 70}) ramp.rgb.insert(ramp.rgb.end(), {static_cast<std::uint8_t>(v), 0, 0});
  const Image half = resize(ramp, 1, 2);
  EXPECT_EQ(half.at(0, 0, 0), 25);  // (0 + 10 + 40 + 50) / 4
  EXPECT_EQ(half.at(0, 1, 0), 45);
  const Image cropped = crop(ramp, 1, 1, 1, 2);
  EXPECT_EQ(cropped.at(0, 0, 0), 50);
  EXPECT_EQ(cropped.at(0, 1, 0), 60);
  const Image square = resize_center_crop(smooth_image(30, 60, 1), 16);
  EXPECT_EQ(square.height, 16);
  EXPECT_EQ(square.width, 16);
  EXPECT_NE(testing::error_of<ValueError>([&] { (void)crop(ramp, 1, 3, 1, 2); }).find("not inside"), std::string::npos);
}

// A class-per-folder tree of PNG and JPEG files, as a user's would be.
class Folder : public Images {
 protected:
  // Three classes with 5, 4 and 6 images; red, green and blue dominate in each.
  void make_tree(const std::string& split, std::uint64_t salt) {
    int k = 0;
    for (const auto& [name, count] : std::vector<std::pair<std::string, int>>{{"cat", 5}, {"dog", 4}, {"zebra", 6}}) {
      fs::create_directories(file(split + "/" + name));
      for (int i = 0; i < count; ++i) {
        Image image = noise_image(12, 12, salt * 1000 + static_cast<std::uint64_t>(k * 100 + i));
        for (std::size_t p = 0; p < image.rgb.size(); p += 3) image.rgb[p + static_cast<std::size_t>(k)] = 250;
        // PNGs, and some JPEGs at quality 100 for the dogs.
        const std::string ext = k == 1 && i % 2 == 0 ? ".jpg" : ".png";
        write_image(file(split + "/" + name + "/img" + std::to_string(i) + ext), image, 100);
      }
      ++k;
    }
    write_bytes(file(split + "/.DS_Store"), {1, 2, 3});
    write_bytes(file(split + "/cat/.hidden.png"), {1, 2, 3});
  }
};

TEST_F(Folder, ListsClassesAndFilesInNameOrder) {
  make_tree("train", 1);
  const ImageFolder folder(file("train"));
  EXPECT_EQ(folder.classes(), (std::vector<std::string>{"cat", "dog", "zebra"}));
  EXPECT_EQ(folder.size(), 15);
  EXPECT_EQ(folder.class_counts(), (std::vector<std::int64_t>{5, 4, 6}));
  EXPECT_EQ(folder.path(0), file("train/cat/img0.png"));
  EXPECT_EQ(folder.label(5), 1);
  EXPECT_FALSE(is_image_folder_root(dir_));
  make_tree("test", 2);
  EXPECT_TRUE(is_image_folder_root(dir_));
  EXPECT_NE(testing::error_of<IoError>([&] { ImageFolder f(file("nope")); }).find("No such file"), std::string::npos);
  fs::create_directories(file("empty/a"));
  EXPECT_NE(testing::error_of<IoError>([&] { ImageFolder f(file("empty")); }).find("hold no files"), std::string::npos);
}

TEST_F(Folder, DecodedPixelsAreTheSourceImages) {
  make_tree("train", 1);
  const ImageFolder folder(file("train"));
  const TensorDataset set = load_image_folder(folder, {});
  ASSERT_EQ(set.inputs().shape(), (Shape{15, 3, 12, 12}));
  const std::vector<float> x = set.inputs().to_vector<float>();
  const std::vector<std::int64_t> y = set.labels().to_vector<std::int64_t>();
  for (std::int64_t i = 0; i < folder.size(); ++i) {
    EXPECT_EQ(y[static_cast<std::size_t>(i)], folder.label(i));
    const Image source = read_image(folder.path(i));
    const bool png = folder.path(i).ends_with(".png");
    int worst = 0;
    for (std::int64_t c = 0; c < 3; ++c) {
      for (std::int64_t p = 0; p < 144; ++p) {
        const float v = x[static_cast<std::size_t>((i * 3 + c) * 144 + p)];
        worst = std::max(worst, std::abs(static_cast<int>(std::lround(v * 255.0f)) -
                                         int{source.rgb[static_cast<std::size_t>(p * 3 + c)]}));
      }
    }
    EXPECT_EQ(worst, 0) << folder.path(i) << (png ? "" : " (the decoded JPEG itself)");
  }
  // PNG files hold exactly what was written; the JPEGs' own loss is bounded in JpegRoundTrips.
  const Image written = read_image(file("train/cat/img0.png"));
  EXPECT_EQ(written.at(0, 0, 0), 250);
}

// The loader's batches are the DataLoader's over the same images in memory, batch for batch,
// in order, out of order (a resume) and cut over ranks.
TEST_F(Folder, LoaderBatchesEqualTheInMemoryDataLoader) {
  make_tree("train", 1);
  const ImageFolder folder(file("train"));
  const TensorDataset set = load_image_folder(folder, {});
  for (int world : {1, 2}) {
    for (int rank = 0; rank < world; ++rank) {
      const LoaderOptions lo{.batch = 4, .shuffle = true, .drop_last = false, .seed = 9, .rank = rank, .world = world};
      DataLoader reference(set, lo);
      ImageFolderLoader loader(folder, {.loader = lo, .workers = 2, .ahead = 2});
      ASSERT_EQ(loader.batches_per_epoch(), reference.batches_per_epoch());
      EXPECT_EQ(loader.order_settings().front(), reference.order_settings().front());
      std::vector<std::pair<std::int64_t, std::int64_t>> visits;
      for (std::int64_t e = 0; e < 2; ++e) {
        for (std::int64_t k = 0; k < reference.batches_per_epoch(); ++k) visits.emplace_back(e, k);
      }
      visits.emplace_back(0, 1);  // back in time, as a resume does
      visits.emplace_back(1, 0);
      for (const auto& [e, k] : visits) {
        Batch want, got;
        reference.fill(e, k, want);
        loader.fill(e, k, got);
        EXPECT_EQ(got.inputs.to_vector<float>(), want.inputs.to_vector<float>()) << e << ":" << k;
        EXPECT_EQ(got.labels.to_vector<std::int64_t>(), want.labels.to_vector<std::int64_t>());
        EXPECT_EQ(got.global_size, want.global_size);
      }
    }
  }
}

TEST_F(Folder, BadFilesStopTheRunOrAreSkippedAndCounted) {
  make_tree("train", 1);
  write_bytes(file("train/dog/broken.png"), {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0});
  write_bytes(file("train/zebra/readme.txt"), {'z'});
  const ImageFolder folder(file("train"));
  ASSERT_EQ(folder.size(), 17);
  const LoaderOptions all_at_once{.batch = 17, .shuffle = false};
  {
    ImageFolderLoader loader(folder, {.loader = all_at_once});
    Batch b;
    const std::string error = testing::error_of<IoError>([&] { loader.fill(0, 0, b); });
    EXPECT_NE(error.find("broken.png: corrupt PNG"), std::string::npos) << error;
  }
  ImageFolderLoader loader(folder, {.loader = all_at_once, .image = {.skip_bad = true}});
  Batch b;
  loader.fill(0, 0, b);
  EXPECT_EQ(b.inputs.dim(0), 15);
  EXPECT_EQ(loader.skipped(), 2);
  loader.fill(0, 0, b);  // counted once per file
  EXPECT_EQ(loader.skipped(), 2);
  // Images of another size are named, with what to do.
  write_image(file("train/cat/zz_big.png"), noise_image(13, 12, 5));
  const std::string error =
      testing::error_of<IoError>([&] { (void)load_image_folder(ImageFolder(file("train")), {.skip_bad = true}); });
  EXPECT_NE(error.find("zz_big.png: 12 x 13 pixels where the data set's images are 12 x 12"), std::string::npos)
      << error;
  // With an image size every image is brought to it.
  const TensorDataset resized = load_image_folder(ImageFolder(file("train")), {.image_size = 8, .skip_bad = true});
  EXPECT_EQ(resized.inputs().shape(), (Shape{16, 3, 8, 8}));
}

TEST_F(Folder, RandomResizedCropsFollowSeedAndEpoch) {
  make_tree("train", 1);
  const ImageFolder folder(file("train"));
  const ImageOptions crops{.image_size = 8, .random_resized_crop = true};
  std::vector<float> a, b, c;
  ASSERT_TRUE(load_image_sample(folder, 3, crops, 1, 0, 8, 8, a));
  ASSERT_TRUE(load_image_sample(folder, 3, crops, 1, 0, 8, 8, b));
  ASSERT_TRUE(load_image_sample(folder, 3, crops, 1, 1, 8, 8, c));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(a.size(), 3u * 64u);
}

// Trains a small CNN on the folder through the loader: each class's colour is learnable.
TEST_F(Folder, TrainsThroughTheLoader) {
  make_tree("train", 1);
  make_tree("test", 2);
  ImageFolderLoader train(ImageFolder(file("train")), {.loader = {.batch = 5, .shuffle = true, .seed = 3}});
  ImageFolderLoader test(ImageFolder(file("test")), {.loader = {.batch = 15, .shuffle = false}});
  manual_seed(1);
  Sequential net{Conv2d(3, 4, 3, {.padding = 1}), ReLU(), GlobalAvgPool(), Linear(4, 3)};
  SGD opt(net.parameters(), {.lr = 0.5, .momentum = 0.9});
  CrossEntropyLoss loss;
  TrainerOptions options;
  options.epochs = 15;
  options.progress = false;
  Trainer trainer(net, opt, loss, options);
  const FitResult r = trainer.fit(train, &test);
  EXPECT_GE(r.final_test.accuracy, 0.99);
  EXPECT_EQ(r.final_test.samples, 15);
}

}  // namespace
}  // namespace gpudl::data
