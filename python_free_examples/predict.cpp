// predict: classifies image files and folders with a trained model read from a self-describing
// checkpoint or model file (load_model), with no model code: one line per image with its top
// classes and their probabilities, and the accuracy where the folders say the true classes.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <future>
#include <numeric>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "example_args.h"
#include "gpudl/core/data/image.h"
#include "gpudl/core/data/image_folder.h"
#include "gpudl/gpudl.h"
#include "gpudl/layers/architecture.h"

namespace {

namespace fs = std::filesystem;

// One image to classify: its path and, where its folder names it, its class (an index into the
// model's classes; -1: unknown).
struct Item {
  std::string path;
  std::int64_t label = -1;
};

bool hidden(const fs::path& p) { return gpudl::data::is_hidden_name(p.filename().string()); }

bool has_subfolder(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!hidden(it->path()) && it->is_directory(ec)) return true;
  }
  return false;
}

// The images PATH stands for, appended to `items`:
//  - a file: itself, unlabelled;
//  - a data-set root (train/ and test/ class folders, as cnn_cifar10 --data takes): its test/;
//  - a folder with subfolders (ImageFolder's layout): the files of its subfolders, labelled by
//    the subfolder's name when every subfolder is named after one of the model's classes;
//  - any other folder: its files in name order, unlabelled.
// Files and folders whose names start with '.' are left out. Throws IoError naming the folder
// when it cannot be listed or holds no file.
void add_images(const std::string& path, const std::vector<std::string>& classes, std::vector<Item>& items) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    items.push_back({path, -1});
    return;
  }
  std::string dir = path;
  if (gpudl::data::is_image_folder_root(path)) {
    dir = (fs::path(path) / "test").string();
    std::fprintf(stderr, "predict: %s is a data-set root (train/ and test/): classifying %s\n", path.c_str(),
                 dir.c_str());
  }
  if (has_subfolder(dir)) {
    const gpudl::data::ImageFolder folder(dir);
    std::vector<std::int64_t> to_model;
    for (const std::string& name : folder.classes()) {
      const auto it = std::find(classes.begin(), classes.end(), name);
      to_model.push_back(it == classes.end() ? -1 : it - classes.begin());
    }
    const bool labelled = std::find(to_model.begin(), to_model.end(), -1) == to_model.end();
    if (!labelled) {
      const char* why =
          classes.empty() ? "the model names no classes" : "its subfolders are not all among the model's classes";
      std::fprintf(stderr, "predict: %s: %s, so its images are unlabelled\n", dir.c_str(), why);
    }
    for (std::int64_t i = 0; i < folder.size(); ++i) {
      items.push_back({folder.path(i), labelled ? to_model[static_cast<std::size_t>(folder.label(i))] : -1});
    }
    return;
  }
  std::vector<std::string> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code kind;
    if (!hidden(it->path()) && !it->is_directory(kind)) files.push_back(it->path().string());
  }
  if (ec) throw gpudl::IoError(dir + ": cannot list: " + ec.message());
  if (files.empty()) throw gpudl::IoError(dir + ": no files to classify");
  std::sort(files.begin(), files.end());
  for (std::string& file : files) items.push_back({std::move(file), -1});
}

// How images become the model's inputs: the shorter side resized to `size`, the central
// size x size window, RGB in [0, 1] (3, size, size), then (x - mean) / stddev per channel when
// the model file gives them (as the Trainer's normalisation does).
struct Preprocess {
  std::int64_t size = 0;
  std::vector<float> mean, inv_std;
};

// A batch of decoded images: pixels (kept.size(), 3, S, S) and the items they came from.
struct Batch {
  std::vector<float> pixels;
  std::vector<std::size_t> kept;  // indices into the item list
  std::int64_t skipped = 0;
};

// Decodes items [begin, end) on `workers` threads. A file that does not decode is skipped
// (counted) with skip_bad, else its IoError (naming it) is thrown; of several, the first in order.
Batch decode_batch(const std::vector<Item>& items, std::size_t begin, std::size_t end, const Preprocess& prep,
                   bool skip_bad, int workers) {
  const std::size_t n = end - begin;
  const std::size_t sample = static_cast<std::size_t>(3 * prep.size * prep.size);
  const std::size_t plane = sample / 3;
  std::vector<float> pixels(n * sample);
  std::vector<char> ok(n, 0);
  std::vector<std::exception_ptr> errors(n);
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t k = next++; k < n; k = next++) {
      try {
        const gpudl::data::Image image =
            gpudl::data::resize_center_crop(gpudl::data::read_image(items[begin + k].path), prep.size);
        float* out = pixels.data() + k * sample;
        for (std::size_t p = 0; p < plane; ++p) {
          for (std::size_t c = 0; c < 3; ++c) {
            float v = static_cast<float>(image.rgb[p * 3 + c]) * (1.0f / 255.0f);
            if (!prep.mean.empty()) v = (v - prep.mean[c]) * prep.inv_std[c];
            out[c * plane + p] = v;
          }
        }
        ok[k] = 1;
      } catch (const gpudl::IoError&) {
        if (!skip_bad) errors[k] = std::current_exception();
      } catch (...) {
        errors[k] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> threads;
  const std::size_t count = std::min<std::size_t>(static_cast<std::size_t>(workers), n);
  for (std::size_t t = 1; t < count; ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  Batch batch;
  batch.pixels.reserve(pixels.size());
  for (std::size_t k = 0; k < n; ++k) {
    if (!ok[k]) {
      ++batch.skipped;
      continue;
    }
    batch.kept.push_back(begin + k);
    batch.pixels.insert(batch.pixels.end(), pixels.begin() + static_cast<std::ptrdiff_t>(k * sample),
                        pixels.begin() + static_cast<std::ptrdiff_t>((k + 1) * sample));
  }
  return batch;
}

// The input size and normalisation the model file gives. Throws IoError naming `path` when it
// gives no (3, S, S) input shape or a malformed normalisation.
Preprocess preprocess_of(const std::string& path, const gpudl::ModelInfo& info) {
  const std::vector<std::int64_t>& shape = info.input_shape;
  if (shape.size() != 3 || shape[0] != 3 || shape[1] < 1 || shape[1] != shape[2]) {
    throw gpudl::IoError(path + ": the model's input shape is " + (shape.empty() ? "not recorded" : "not (3, S, S)") +
                         ", so predict cannot size the images (save it with ModelInfo::input_shape)");
  }
  Preprocess prep;
  prep.size = shape[1];
  if (info.mean.empty() && info.stddev.empty()) return prep;
  if (info.mean.size() != 3 || info.stddev.size() != 3) {
    throw gpudl::IoError(path + ": the normalisation needs 3 means and 3 standard deviations, got " +
                         std::to_string(info.mean.size()) + " and " + std::to_string(info.stddev.size()));
  }
  prep.mean = info.mean;
  for (float s : info.stddev) {
    if (!(s > 0.0f)) throw gpudl::IoError(path + ": a standard deviation of the normalisation is not > 0");
    prep.inv_std.push_back(1.0f / s);
  }
  return prep;
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace gpudl;
  examples::Args args("predict",
                      "Classifies PNG and JPEG images with a trained model, with no model code: the model comes from "
                      "a Trainer checkpoint or export_model file that records its architecture (cnn_cifar10 "
                      "--checkpoint). Prints one line per image, PATH<TAB>class probability for its top K classes; "
                      "the count, time, images/s and, when every image's class is known from its folder, the "
                      "accuracy go to stderr at the end.");
  args.option("checkpoint", "", "checkpoint or model file with the model's architecture (required)")
      .option("top", "1", "classes printed per image, most probable first (at most the model's classes)")
      .option("device", "auto", "auto, cpu, cuda or cuda:N")
      .option("batch", "256", "images per forward pass")
      .option("workers", "0", "decoding threads (0: one per core)")
      .option("skip-bad", "0", "leave out, and count, files that do not decode (1) or stop naming the first (0)")
      .option("metrics", "", "JSON-lines metrics file (a final record)")
      .positional("PATH",
                  "image files or folders: a folder of class subfolders named after the model's classes gives "
                  "labelled images (a root with train/ and test/ stands for test/); any other folder, its files");
  args.parse(argc, argv);

  // Every flag is checked here, before the model is read.
  const std::string& checkpoint = args.str("checkpoint");
  args.require(!checkpoint.empty(), "checkpoint", "a checkpoint or model file");
  examples::check_readable(args, "checkpoint");
  const std::int64_t top_flag = args.integer("top", 1);
  const std::int64_t batch_size = args.integer("batch", 1);
  const std::int64_t workers_flag = args.integer("workers");
  args.require(workers_flag <= 256, "workers", "a thread count from 0 (one per core) to 256");
  const bool skip_bad = args.boolean("skip-bad");
  examples::check_writable(args, "metrics");
  const std::vector<std::string>& paths = args.positionals();
  if (paths.empty()) {
    throw std::invalid_argument("no PATH given: name the image files or folders to classify (see --help)");
  }
  for (const std::string& path : paths) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw IoError(path + ": no such file or folder");
  }
  // Last, since "auto" may print a note about the GPU it looked for.
  const Device device = Device::parse(args.str("device"));
  const int workers = workers_flag > 0 ? static_cast<int>(workers_flag)
                                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  LoadedModel loaded = load_model(checkpoint);
  const ModelInfo& info = loaded.info;
  const Preprocess prep = preprocess_of(checkpoint, info);
  Module& model = *loaded.model;
  model.eval();
  model.to(device);

  std::vector<Item> items;
  for (const std::string& path : paths) add_images(path, info.classes, items);
  const bool labelled = std::all_of(items.begin(), items.end(), [](const Item& it) { return it.label >= 0; });

  examples::MetricsFile metrics(args.str("metrics"));
  const auto start = std::chrono::steady_clock::now();
  const std::size_t total = items.size(), step = static_cast<std::size_t>(batch_size);
  auto decode = [&](std::size_t begin) {
    return std::async(std::launch::async, [&, begin] {
      return decode_batch(items, begin, std::min(begin + step, total), prep, skip_bad, workers);
    });
  };
  // The next batch decodes while this one runs through the model.
  std::future<Batch> pending = decode(0);
  std::int64_t images = 0, skipped = 0, correct = 0, correct_top = 0, top = 0;
  for (std::size_t begin = 0; begin < total; begin += step) {
    const Batch batch = pending.get();
    if (begin + step < total) pending = decode(begin + step);
    skipped += batch.skipped;
    const auto n = static_cast<std::int64_t>(batch.kept.size());
    if (n == 0) continue;
    const Tensor x = Tensor::from_vector(batch.pixels, Shape{n, 3, prep.size, prep.size}).to(device);
    const Tensor y = model.forward(x);
    if (y.ndim() != 2 || y.dim(0) != n) {
      throw IoError(checkpoint + ": the model's output " + y.shape().str() + " is not (batch, classes) scores");
    }
    const std::int64_t classes = y.dim(1);
    if (!info.classes.empty() && static_cast<std::int64_t>(info.classes.size()) != classes) {
      throw IoError(checkpoint + ": the model gives " + std::to_string(classes) + " scores but names " +
                    std::to_string(info.classes.size()) + " classes");
    }
    top = std::min(top_flag, classes);
    const std::vector<float> logits = y.as(DType::kF32).to_vector<float>();
    std::string out;
    std::vector<std::int64_t> order(static_cast<std::size_t>(classes));
    std::vector<double> prob(static_cast<std::size_t>(classes));
    for (std::int64_t i = 0; i < n; ++i) {
      const float* row = logits.data() + i * classes;
      // Softmax in double; ranked by the logits, ties to the lower index as argmax breaks them.
      const double peak = *std::max_element(row, row + classes);
      double sum = 0.0;
      for (std::int64_t c = 0; c < classes; ++c) sum += prob[static_cast<std::size_t>(c)] = std::exp(row[c] - peak);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return row[a] > row[b]; });
      const Item& item = items[batch.kept[static_cast<std::size_t>(i)]];
      out += item.path;
      for (std::int64_t k = 0; k < top; ++k) {
        const std::int64_t c = order[static_cast<std::size_t>(k)];
        char p[32];
        std::snprintf(p, sizeof p, " %.4f", prob[static_cast<std::size_t>(c)] / sum);
        out += '\t';
        out += info.classes.empty() ? std::to_string(c) : info.classes[static_cast<std::size_t>(c)];
        out += p;
        if (c == item.label) {
          correct_top += 1;
          if (k == 0) correct += 1;
        }
      }
      out += '\n';
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    images += n;
  }
  std::fflush(stdout);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double rate = seconds > 0.0 ? static_cast<double>(images) / seconds : 0.0;
  if (top == 0) top = top_flag;  // no image got through: the asked K

  json::Object record{{"event", "final"},         {"images", images}, {"seconds", seconds},
                      {"images_per_second", rate}, {"top_k", top}, {"skipped", skipped},
                      {"device", device.str()}};
  std::string summary;
  if (labelled && images > 0) {
    const double accuracy = static_cast<double>(correct) / static_cast<double>(images);
    const double top_accuracy = static_cast<double>(correct_top) / static_cast<double>(images);
    record.emplace_back("accuracy", accuracy);
    record.emplace_back("top_k_accuracy", top_accuracy);
    char text[96];
    std::snprintf(text, sizeof text, ", accuracy %.2f%%", 100.0 * accuracy);
    summary = text;
    if (top > 1) {
      std::snprintf(text, sizeof text, ", top-%lld accuracy %.2f%%", static_cast<long long>(top), 100.0 * top_accuracy);
      summary += text;
    }
  }
  if (skipped > 0) summary += ", skipped " + std::to_string(skipped) + " files that do not decode as images";
  std::fprintf(stderr, "predict: %lld images in %.2f s (%.1f images/s) on %s%s\n", static_cast<long long>(images),
               seconds, rate, device.str().c_str(), summary.c_str());
  metrics.write(record);
  return 0;
} catch (const std::exception& e) {
  return examples::fail("predict", e);
}
