// ImageFolder's listing, the per-sample decode/crop/resize, whole-split loading, and the
// worker-thread loader that decodes batches ahead of training.
#include "gpudl/core/data/image_folder.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <tuple>
#include <utility>

#include "gpudl/core/runtime/error.h"
#include "gpudl/kernels/philox.h"

namespace gpudl::data {

namespace fs = std::filesystem;

namespace {

bool hidden(const fs::path& p) { return is_hidden_name(p.filename().string()); }

// The entries of `dir` that `keep` accepts, by name.
template <class Keep>
std::vector<fs::path> list(const std::string& root, const fs::path& dir, Keep keep) {
  std::error_code ec;
  std::vector<fs::path> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!hidden(it->path()) && keep(*it)) out.push_back(it->path());
  }
  if (ec) throw IoError(root + ": cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

// A stream of uniform doubles in [0, 1) for sample `sample` of `epoch`: the random crop's draws.
class CropDraws {
 public:
  CropDraws(std::uint64_t seed, std::int64_t epoch, std::int64_t sample)
      : seed_(seed ^ 0x5eed'c409'0000'0001ULL),
        epoch_(static_cast<std::uint64_t>(epoch)),
        sample_(static_cast<std::uint64_t>(sample)) {}
  double next() {
    if (k_ % 4 == 0) block_ = kernels::philox_block(seed_, epoch_, sample_ * 64 + k_ / 4);
    return static_cast<double>(block_.v[k_++ % 4]) * 0x1p-32;
  }

 private:
  std::uint64_t seed_, epoch_, sample_;
  std::uint64_t k_ = 0;
  kernels::Philox4x32 block_{};
};

// torchvision's RandomResizedCrop window: 10 tries at a random area and aspect ratio, else the
// whole image's central window of the nearest allowed ratio.
Image random_resized_crop(const Image& image, std::int64_t size, CropDraws& draws) {
  const double area = static_cast<double>(image.height * image.width);
  const double log_low = std::log(3.0 / 4.0), log_high = std::log(4.0 / 3.0);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * (0.08 + 0.92 * draws.next());
    const double ratio = std::exp(log_low + (log_high - log_low) * draws.next());
    const auto w = static_cast<std::int64_t>(std::lround(std::sqrt(target * ratio)));
    const auto h = static_cast<std::int64_t>(std::lround(std::sqrt(target / ratio)));
    const double u = draws.next(), v = draws.next();
    if (w >= 1 && h >= 1 && w <= image.width && h <= image.height) {
      const auto top = static_cast<std::int64_t>(u * static_cast<double>(image.height - h + 1));
      const auto left = static_cast<std::int64_t>(v * static_cast<double>(image.width - w + 1));
      return resize(crop(image, top, left, h, w), size, size);
    }
  }
  const double ratio = static_cast<double>(image.width) / static_cast<double>(image.height);
  std::int64_t w = image.width, h = image.height;
  if (ratio < 3.0 / 4.0) h = std::max<std::int64_t>(1, std::lround(static_cast<double>(w) / (3.0 / 4.0)));
  if (ratio > 4.0 / 3.0) w = std::max<std::int64_t>(1, std::lround(static_cast<double>(h) * (4.0 / 3.0)));
  return resize(crop(image, (image.height - h) / 2, (image.width - w) / 2, h, w), size, size);
}

int worker_count(int asked) {
  if (asked > 0) return asked;
  const unsigned cores = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp<unsigned>(cores == 0 ? 1 : cores, 1, 8));
}

void check_batch_index(const char* who, std::int64_t epoch, std::int64_t index, std::int64_t batches) {
  if (epoch < 0) throw ValueError(std::string(who) + ": negative epoch " + std::to_string(epoch));
  if (index < 0 || index >= batches) {
    throw ValueError(std::string(who) + ": batch " + std::to_string(index) + " is outside [0, " +
                     std::to_string(batches) + ")");
  }
}

}  // namespace

ImageFolder::ImageFolder(std::string root) : root_(std::move(root)) {
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) {
    throw IoError(root_ +
                  ": cannot open: " + (fs::exists(root_, ec) ? "Not a directory" : "No such file or directory"));
  }
  const std::vector<fs::path> dirs = list(root_, root_, [](const fs::directory_entry& e) {
    std::error_code err;
    return e.is_directory(err);
  });
  if (dirs.empty()) throw IoError(root_ + ": no class folders (expected one subfolder of images per class)");
  for (const fs::path& dir : dirs) {
    const auto label = static_cast<std::int64_t>(classes_.size());
    classes_.push_back(dir.filename().string());
    for (const fs::path& file : list(root_, dir, [](const fs::directory_entry& e) {
           std::error_code err;
           return !e.is_directory(err);
         })) {
      files_.push_back(file.string());
      labels_.push_back(label);
    }
  }
  if (files_.empty())
    throw IoError(root_ + ": its " + std::to_string(classes_.size()) + " class folders hold no files");
}

std::vector<std::int64_t> ImageFolder::class_counts() const {
  std::vector<std::int64_t> counts(classes_.size(), 0);
  for (std::int64_t label : labels_) ++counts[static_cast<std::size_t>(label)];
  return counts;
}

bool is_hidden_name(const std::string& filename) { return filename.starts_with("."); }

bool is_image_folder_root(const std::string& root) {
  std::error_code ec;
  for (const char* split : {"train", "test"}) {
    const fs::path dir = fs::path(root) / split;
    if (!fs::is_directory(dir, ec)) return false;
    bool any = false;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end && !any; it.increment(ec)) {
      any = it->is_directory(ec) && !hidden(it->path());
    }
    if (!any) return false;
  }
  return true;
}

bool load_image_sample(const ImageFolder& folder, std::int64_t i, const ImageOptions& options, std::uint64_t seed,
                       std::int64_t epoch, std::int64_t height, std::int64_t width, std::vector<float>& out) {
  Image image;
  try {
    image = read_image(folder.path(i));
  } catch (const IoError&) {
    if (options.skip_bad) return false;
    throw;
  }
  if (options.image_size > 0) {
    if (options.random_resized_crop) {
      CropDraws draws(seed, epoch, i);
      image = random_resized_crop(image, options.image_size, draws);
    } else {
      image = resize_center_crop(image, options.image_size);
    }
  }
  if ((height > 0 && image.height != height) || (width > 0 && image.width != width)) {
    throw IoError(folder.path(i) + ": " + std::to_string(image.width) + " x " + std::to_string(image.height) +
                  " pixels where the data set's images are " + std::to_string(width) + " x " + std::to_string(height) +
                  " (give an image size to resize them)");
  }
  const std::size_t plane = static_cast<std::size_t>(image.height * image.width);
  out.resize(3 * plane);
  for (std::size_t p = 0; p < plane; ++p) {
    for (std::size_t c = 0; c < 3; ++c) out[c * plane + p] = static_cast<float>(image.rgb[p * 3 + c]) * (1.0f / 255.0f);
  }
  return true;
}

namespace {

// Every sample's (height, width): image_size when set, else the first decodable image's.
std::pair<std::int64_t, std::int64_t> sample_size(const ImageFolder& folder, const ImageOptions& options) {
  if (options.image_size > 0) return {options.image_size, options.image_size};
  for (std::int64_t i = 0; i < folder.size(); ++i) {
    try {
      const Image probe = read_image(folder.path(i));
      return {probe.height, probe.width};
    } catch (const IoError&) {
      if (!options.skip_bad) throw;
    }
  }
  throw IoError(folder.root() + ": no file decoded as an image");
}

}  // namespace

TensorDataset load_image_folder(const ImageFolder& folder, const ImageOptions& options, int workers) {
  if (options.image_size < 0)
    throw ValueError("load_image_folder: image_size must be >= 0, got " + std::to_string(options.image_size));
  if (options.random_resized_crop && options.image_size < 1) {
    throw ValueError("load_image_folder: random_resized_crop needs an image_size");
  }
  const std::int64_t n = folder.size();
  std::vector<std::vector<float>> rows(static_cast<std::size_t>(n));
  std::vector<char> ok(static_cast<std::size_t>(n), 0);
  const std::pair<std::int64_t, std::int64_t> size = sample_size(folder, options);
  const std::int64_t height = size.first, width = size.second;
  std::atomic<std::int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (std::int64_t i = next++; i < n; i = next++) {
      try {
        ok[static_cast<std::size_t>(i)] =
            load_image_sample(folder, i, options, 0, 0, height, width, rows[static_cast<std::size_t>(i)]) ? 1 : 0;
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < worker_count(workers); ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  if (error) std::rethrow_exception(error);
  const auto kept = static_cast<std::int64_t>(std::count(ok.begin(), ok.end(), 1));
  if (kept == 0) throw IoError(folder.root() + ": no file decoded as an image");
  Tensor inputs = Tensor::empty({kept, 3, height, width});
  Tensor labels = Tensor::empty({kept}, DType::kI64);
  float* x = inputs.data<float>();
  std::int64_t* y = labels.data<std::int64_t>();
  const std::size_t row = static_cast<std::size_t>(3 * height * width);
  std::int64_t b = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (ok[static_cast<std::size_t>(i)] == 0) continue;
    std::memcpy(x + static_cast<std::size_t>(b) * row, rows[static_cast<std::size_t>(i)].data(), row * sizeof(float));
    y[b++] = folder.label(i);
  }
  return TensorDataset(inputs, labels);
}

// ---------------------------------------------------------------------------------------------
// ImageFolderLoader

ImageFolderLoader::ImageFolderLoader(ImageFolder folder, ImageLoaderOptions options)
    : folder_(std::move(folder)), options_(std::move(options)), skipped_(static_cast<std::size_t>(folder_.size())) {
  if (options_.loader.batch < 1) {
    throw ValueError("ImageFolderLoader: batch must be >= 1, got " + std::to_string(options_.loader.batch));
  }
  if (options_.ahead < 1)
    throw ValueError("ImageFolderLoader: ahead must be >= 1, got " + std::to_string(options_.ahead));
  if (options_.workers < 0) {
    throw ValueError("ImageFolderLoader: workers must be >= 0, got " + std::to_string(options_.workers));
  }
  if (options_.image.image_size < 0) {
    throw ValueError("ImageFolderLoader: image_size must be >= 0, got " + std::to_string(options_.image.image_size));
  }
  if (options_.image.random_resized_crop && options_.image.image_size == 0) {
    throw ValueError("ImageFolderLoader: random_resized_crop needs an image_size");
  }
  check_shard("ImageFolderLoader", options_.loader.rank, options_.loader.world);
  std::tie(height_, width_) = sample_size(folder_, options_.image);
  for (int t = 0; t < worker_count(options_.workers); ++t) workers_.emplace_back([this] { work(); });
}

ImageFolderLoader::~ImageFolderLoader() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_workers_.notify_all();
  for (std::thread& t : workers_) t.join();
}

std::int64_t ImageFolderLoader::batches_per_epoch() const {
  std::lock_guard lock(mutex_);
  return data::batches_per_epoch(folder_.size(), options_.loader);
}

OrderSettings ImageFolderLoader::order_settings() const {
  std::lock_guard lock(mutex_);
  OrderSettings s = loader_order_settings(folder_.size(), options_.loader);
  // The crops differ with these, so a resume with others would train on other images.
  s.emplace_back("image_size", std::to_string(options_.image.image_size));
  s.emplace_back("random_resized_crop", options_.image.random_resized_crop ? "1" : "0");
  return s;
}

std::int64_t ImageFolderLoader::skipped() const {
  std::lock_guard lock(mutex_);
  return skipped_count_;
}

void ImageFolderLoader::set_pinned(bool pinned) {
  std::lock_guard lock(mutex_);
  options_.loader.pinned = pinned;
}

bool ImageFolderLoader::set_shard(int rank, int world) {
  check_shard("ImageFolderLoader::set_shard", rank, world);
  std::lock_guard lock(mutex_);
  options_.loader.rank = rank;
  options_.loader.world = world;
  for (const auto& job : queue_) job->done = true;  // never run: nobody waits for them
  queue_.clear();
  jobs_.clear();
  return true;
}

const std::vector<std::int64_t>& ImageFolderLoader::order_for(std::int64_t epoch) {
  for (const auto& [e, order] : orders_) {
    if (e == epoch) return order;
  }
  if (orders_.size() >= 2) orders_.erase(orders_.begin());
  orders_.emplace_back(epoch, epoch_order(folder_.size(), options_.loader, epoch));
  return orders_.back().second;
}

void ImageFolderLoader::queue_locked(std::int64_t epoch, std::int64_t index) {
  auto job = std::make_shared<Job>();
  job->epoch = epoch;
  job->index = index;
  const std::vector<std::int64_t>& order = order_for(epoch);
  const BatchSlice slice = batch_slice(folder_.size(), index, options_.loader);
  job->batch.global_size = slice.global_count;
  // Workers get the samples themselves and never read the order cache.
  job->samples.assign(order.begin() + slice.first, order.begin() + slice.first + slice.count);
  jobs_.push_back(job);
  queue_.push_back(std::move(job));
  wake_workers_.notify_one();
}

void ImageFolderLoader::fill(std::int64_t epoch, std::int64_t index, Batch& out) {
  std::shared_ptr<Job> job;
  {
    std::unique_lock lock(mutex_);
    const std::int64_t batches = data::batches_per_epoch(folder_.size(), options_.loader);
    check_batch_index("ImageFolderLoader::fill", epoch, index, batches);
    // What was queued before the wanted batch is not wanted; anything else in the queue after
    // an out-of-order request (a resume, an evaluation restarting) is dropped too.
    auto wanted =
        std::find_if(jobs_.begin(), jobs_.end(), [&](const auto& j) { return j->epoch == epoch && j->index == index; });
    if (wanted == jobs_.end()) {
      for (const auto& j : queue_) j->done = true;
      queue_.clear();
      jobs_.clear();
      queue_locked(epoch, index);
    } else {
      jobs_.erase(jobs_.begin(), wanted);
    }
    // Keep `ahead` batches queued after this one, running into the next epoch.
    std::int64_t e = jobs_.back()->epoch, k = jobs_.back()->index;
    while (static_cast<std::int64_t>(jobs_.size()) < options_.ahead + 1) {
      if (++k == batches) {
        k = 0;
        ++e;
      }
      queue_locked(e, k);
    }
    job = jobs_.front();
    jobs_.erase(jobs_.begin());
    job_done_.wait(lock, [&] { return job->done; });
  }
  if (job->error) std::rethrow_exception(job->error);
  const Tensor& x = job->batch.inputs;
  const Tensor& y = job->batch.labels;
  ensure_buffer(out.inputs, x.shape(), DType::kF32, options_.loader.pinned);
  ensure_buffer(out.labels, y.shape(), DType::kI64, options_.loader.pinned);
  if (x.numel() > 0) std::memcpy(out.inputs.raw(), x.raw(), x.nbytes());
  if (y.numel() > 0) std::memcpy(out.labels.raw(), y.raw(), y.nbytes());
  out.global_size = job->batch.global_size;
}

void ImageFolderLoader::work() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mutex_);
      wake_workers_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      decode(*job);
    } catch (...) {
      job->error = std::current_exception();
    }
    {
      std::lock_guard lock(mutex_);
      job->done = true;
    }
    job_done_.notify_all();
  }
}

void ImageFolderLoader::decode(Job& job) {
  const std::size_t row = static_cast<std::size_t>(3 * height_ * width_);
  const auto count = static_cast<std::int64_t>(job.samples.size());
  std::vector<float> pixels(static_cast<std::size_t>(count) * row);
  std::vector<std::int64_t> labels;
  std::vector<float> sample;
  std::int64_t kept = 0;
  for (std::int64_t s : job.samples) {
    if (load_image_sample(folder_, s, options_.image, options_.loader.seed, job.epoch, height_, width_, sample)) {
      std::memcpy(pixels.data() + static_cast<std::size_t>(kept++) * row, sample.data(), row * sizeof(float));
      labels.push_back(folder_.label(s));
      continue;
    }
    std::lock_guard lock(mutex_);
    if (!skipped_[static_cast<std::size_t>(s)]) {
      skipped_[static_cast<std::size_t>(s)] = true;
      ++skipped_count_;
    }
  }
  pixels.resize(static_cast<std::size_t>(kept) * row);
  job.batch.inputs = Tensor::from_vector(pixels, Shape{kept, 3, height_, width_});
  job.batch.labels = Tensor::from_vector(labels, Shape{kept});
}

}  // namespace gpudl::data
