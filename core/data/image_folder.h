// Image-folder data sets (torchvision's ImageFolder layout: one subfolder of PNG/JPEG files per
// class, named after it), and the loader that decodes their batches ahead of training on a pool
// of worker threads, so memory stays bounded whatever the data set's size.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gpudl/core/data/data.h"
#include "gpudl/core/data/image.h"

namespace gpudl::data {

// How images become tensors: RGB in [0, 1], (3, size, size) per sample. Normalisation and the
// augmentation of core/data/augment.h come after, on the batch, as for the binary data sets.
struct ImageOptions {
  // > 0: the shorter side resized to image_size and the central square cut out (or, with
  // random_resized_crop, a random window resized to image_size x image_size). 0: images are
  // taken at their own size, which must then be the same for all of them.
  std::int64_t image_size = 0;
  // Training's random-resized crop (Szegedy et al. 2015, as torchvision's): a window of a
  // uniform 8-100% of the area and a log-uniform 3/4-4/3 aspect ratio, drawn from Philox by
  // (seed, epoch, sample), so a resumed run crops alike. Needs image_size.
  bool random_resized_crop = false;
  // Corrupt, truncated and non-image files are left out of their batch and counted
  // (ImageFolderLoader::skipped) instead of stopping the run with an error naming the file.
  bool skip_bad = false;
};

// One split of an image-folder data set: `root/<class>/<file>`. Classes are the subfolders in
// name order (labels 0, 1, ...), files are taken in name order within each; files and folders
// whose names start with '.' are ignored. Every other file is a sample: one that does not decode
// as PNG or JPEG is an error when read (or skipped, with ImageOptions::skip_bad).
class ImageFolder {
 public:
  // Lists `root`. Throws IoError naming `root` when it is not a readable folder, holds no class
  // subfolder, or its classes hold no file.
  explicit ImageFolder(std::string root);

  const std::string& root() const { return root_; }
  const std::vector<std::string>& classes() const { return classes_; }
  std::int64_t size() const { return static_cast<std::int64_t>(files_.size()); }
  const std::string& path(std::int64_t i) const { return files_.at(static_cast<std::size_t>(i)); }
  std::int64_t label(std::int64_t i) const { return labels_.at(static_cast<std::size_t>(i)); }
  // The samples per class, in class order.
  std::vector<std::int64_t> class_counts() const;

 private:
  std::string root_;
  std::vector<std::string> classes_;
  std::vector<std::string> files_;
  std::vector<std::int64_t> labels_;
};

// Whether a folder entry named `filename` is hidden (the name starts with '.'): ImageFolder
// skips such files and folders, as the tools that make data sets leave them (.DS_Store, .git).
bool is_hidden_name(const std::string& filename);

// Whether `root` is laid out as an image-folder data set root: `root/train` and `root/test`
// folders, each with at least one subfolder.
bool is_image_folder_root(const std::string& root);

// The image of sample `i` as the loader gives it: decoded, cropped and resized as `options` say
// (with `epoch` and `seed` drawing the random crop), as floats (3, H, W) in [0, 1] into `out`.
// Returns false for a file that does not decode when options.skip_bad is set; throws IoError
// naming the file otherwise, and for an image whose size differs from (height, width) when
// those are given (> 0).
bool load_image_sample(const ImageFolder& folder, std::int64_t i, const ImageOptions& options, std::uint64_t seed,
                       std::int64_t epoch, std::int64_t height, std::int64_t width, std::vector<float>& out);

// Decodes the whole split into memory (inputs (N, 3, H, W) f32 in [0, 1], labels i64) with
// `workers` threads (0: the machine's cores): for test sets and small data. Throws as
// load_image_sample; skipped files are left out.
TensorDataset load_image_folder(const ImageFolder& folder, const ImageOptions& options, int workers = 0);

struct ImageLoaderOptions {
  LoaderOptions loader = {};
  ImageOptions image = {};
  int workers = 0;         // decoding threads; 0: the machine's cores, at most 8
  std::int64_t ahead = 4;  // batches decoded ahead of the one being trained on (>= 1)
};

// Batches of an ImageFolder in DataLoader's order (epoch_order, batch_slice: the same seed
// gives the same batches, cut over ranks alike), decoded by worker threads while the previous
// ones train: asking for batch k of epoch e queues the next `ahead` batches (into the next
// epoch at its end), and at most ahead + 1 batches are held. Out-of-order requests (a resume)
// drop what was queued. Batch buffers are pinned once set_pinned(true) is called (the Trainer
// does on a GPU). Errors of a worker are thrown by the fill() that wanted the batch.
class ImageFolderLoader : public BatchSource {
 public:
  // Decodes the first file to learn the samples' size (image_size x image_size when set).
  // Throws ValueError for options out of range, IoError as load_image_sample.
  ImageFolderLoader(ImageFolder folder, ImageLoaderOptions options);
  ~ImageFolderLoader() override;
  ImageFolderLoader(const ImageFolderLoader&) = delete;
  ImageFolderLoader& operator=(const ImageFolderLoader&) = delete;

  std::int64_t batches_per_epoch() const override;
  void fill(std::int64_t epoch, std::int64_t index, Batch& out) override;
  bool shuffled() const override { return options_.loader.shuffle; }
  OrderSettings order_settings() const override;
  void set_pinned(bool pinned) override;
  bool set_shard(int rank, int world) override;

  const ImageFolder& folder() const { return folder_; }
  // One sample's shape, (3, H, W).
  Shape sample_shape() const { return Shape{3, height_, width_}; }
  // Files left out so far (ImageOptions::skip_bad), counted once each.
  std::int64_t skipped() const;

 private:
  struct Job {
    std::int64_t epoch = 0, index = 0;
    std::vector<std::int64_t> samples;  // indices into the folder, in batch order
    bool done = false;
    Batch batch;
    std::exception_ptr error;
  };
  void work();
  void decode(Job& job);
  void queue_locked(std::int64_t epoch, std::int64_t index);
  const std::vector<std::int64_t>& order_for(std::int64_t epoch);

  ImageFolder folder_;
  ImageLoaderOptions options_;
  std::int64_t height_ = 0, width_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable wake_workers_, job_done_;
  std::deque<std::shared_ptr<Job>> queue_;  // waiting for a worker
  std::vector<std::shared_ptr<Job>> jobs_;  // queued, running or done, in request order
  std::vector<std::thread> workers_;
  std::vector<std::pair<std::int64_t, std::vector<std::int64_t>>> orders_;  // (epoch, order), two at most
  std::vector<bool> skipped_;                                               // per sample
  std::int64_t skipped_count_ = 0;
  bool stop_ = false;
};

}  // namespace gpudl::data
