// cnn_cifar10: the main job — a CNN (quick for CPUs, resnet for GPUs, airbench for the speed-run
// recipe) trained on CIFAR-10, or on folders of one's own images, with SGD + Nesterov momentum,
// one-cycle learning rate, weight decay and augmentation.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>
#include <vector>

#include "gpudl/layers/models/cifar.h"
#include "example_train.h"
#include "gpudl/core/data/cifar.h"
#include "gpudl/core/data/image_folder.h"
#include "gpudl/gpudl.h"
#include "gpudl/kernels/augment.h"

namespace {

bool is_dir(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Each model's training recipe: what the 0 defaults of the flags stand for.
struct Recipe {
  int epochs;
  std::int64_t batch;
  double lr;  // of the mean loss over the batch
  double momentum;
  double weight_decay;
  int crop_padding;
  float label_smoothing;
  double warmup;  // the one-cycle schedule's rising part, as a share of the steps
};

Recipe recipe_for(const std::string& model) {
  if (model == "quick") return {15, 128, 0.1, 0.9, 5e-4, 4, 0.0f, 0.25};
  if (model == "resnet") return {30, 512, 0.4, 0.9, 5e-4, 4, 0.0f, 0.25};
  // airbench94's published hyperparameters, restated for a mean loss: lr 11.5 and weight decay
  // 0.0153 "per 1024 examples" over a summed loss with Nesterov momentum 0.85 are, at batch 1024,
  // lr 11.5 / (1 + 1 / 0.15) = 1.5 and an SGD weight decay of 0.0153 / 11.5 = 1.33e-3. Label
  // smoothing 0.2, translations of up to 2 pixels; the schedule is airbench_schedule's.
  return {12, 1024, 1.5, 0.85, 0.0153 / 11.5, 2, 0.2f, 0.23};
}

// airbench's learning rate: linear from 0.2 x peak up to the peak at 23% of the steps, then down
// to 0.07 x peak at the last.
std::shared_ptr<gpudl::Schedule> airbench_schedule(double peak, std::int64_t steps) {
  const auto top = std::max<std::int64_t>(1, static_cast<std::int64_t>(0.23 * static_cast<double>(steps)));
  return std::make_shared<gpudl::PiecewiseLinearLR>(std::vector<std::pair<std::int64_t, double>>{
      {0, 0.2 * peak}, {top, peak}, {std::max(steps, top + 1), 0.07 * peak}});
}

// The rest of airbench's recipe, run after every training step: the whitening layer's bias
// learns for the first 3 epochs only; from epoch 3 on, every 5th step pulls the weights towards
// a slow moving average of them (lookahead, with a decay that grows as 0.95^5 x progress^3) and
// each epoch ends on the average itself. The state goes into the checkpoints, so a resumed run
// continues exactly.
class AirbenchSteps {
 public:
  AirbenchSteps(gpudl::Sequential& net, gpudl::Optimizer& opt, std::int64_t steps_per_epoch, std::int64_t total_steps)
      : net_(net), opt_(opt), per_epoch_(steps_per_epoch), total_(total_steps) {
    const std::vector<gpudl::Parameter*>& params = opt.params();
    gpudl::Parameter* whiten_bias = net[0].parameters()[1];
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (params[i] == whiten_bias) whiten_bias_ = i;
    }
  }

  // Called with the number of steps done so far (after a step, or on resume).
  void after(std::int64_t step) {
    step_ = step;
    opt_.set_param_scale(whiten_bias_, step < 3 * per_epoch_ ? 1.0 : 0.0);
    if ((step - 1) / per_epoch_ >= 3 && step % 5 == 0) {
      if (!average_) {
        average_ = std::make_unique<gpudl::WeightAverage>(net_);
      } else {
        const double progress = static_cast<double>(step) / static_cast<double>(total_);
        average_->lookahead(std::pow(0.95, 5) * progress * progress * progress);
      }
    }
    if (average_ && step % per_epoch_ == 0) average_->copy_to_model();
  }

  // For checkpoints: the steps done and, once it exists, the average.
  std::vector<gpudl::NamedTensor> state() const {
    std::vector<gpudl::NamedTensor> out{
        {"airbench.step", gpudl::Tensor::from_vector(std::vector<std::int64_t>{step_}, gpudl::Shape{1})}};
    if (average_) {
      for (auto& entry : average_->state("lookahead.")) out.push_back(std::move(entry));
    }
    return out;
  }
  void load(const std::string& path, const std::vector<gpudl::NamedTensor>& entries) {
    const auto step = std::find_if(entries.begin(), entries.end(),
                                   [](const gpudl::NamedTensor& e) { return e.first == "airbench.step"; });
    if (step == entries.end() || step->second.numel() != 1 || step->second.dtype() != gpudl::DType::kI64) {
      throw gpudl::ValueError(path + ": no airbench.step entry; it was not written by cnn_cifar10 --model airbench");
    }
    step_ = step->second.to_vector<std::int64_t>()[0];
    const bool averaged = std::any_of(entries.begin(), entries.end(),
                                      [](const gpudl::NamedTensor& e) { return e.first.starts_with("lookahead."); });
    average_.reset();
    if (averaged) {
      average_ = std::make_unique<gpudl::WeightAverage>(net_);
      average_->load_state(entries, "lookahead.");
    }
    opt_.set_param_scale(whiten_bias_, step_ < 3 * per_epoch_ ? 1.0 : 0.0);
  }

 private:
  gpudl::Sequential& net_;
  gpudl::Optimizer& opt_;
  std::int64_t per_epoch_, total_;
  std::int64_t step_ = 0;
  std::size_t whiten_bias_ = 0;
  std::unique_ptr<gpudl::WeightAverage> average_;
};

// The images (N, C, H, W) moved by (dy, dx) pixels (each -1, 0 or 1), the uncovered border
// mirrored about the edge pixels (PyTorch's 'reflect'), then mirrored left to right when `flip`:
// the training augmentation's own per-pixel rule with a chosen, not drawn, crop.
std::vector<float> shifted_view(const std::vector<float>& images, const gpudl::Shape& shape, int dy, int dx,
                                bool flip) {
  const std::int64_t h = shape[2], w = shape[3];
  const gpudl::kernels::AugmentChoice choice{1 - dy, 1 - dx, flip};  // a crop of the image padded by 1
  std::vector<float> out(images.size());
  for (std::int64_t plane = 0; plane < shape[0] * shape[1]; ++plane) {
    const float* src = images.data() + plane * h * w;
    float* dst = out.data() + plane * h * w;
    for (std::int64_t y = 0; y < h; ++y) {
      for (std::int64_t x = 0; x < w; ++x) {
        dst[y * w + x] = gpudl::kernels::augment_pixel(src, h, w, y, x, 1, true, choice, nullptr, nullptr, 0);
      }
    }
  }
  return out;
}

// Test accuracy with test-time augmentation, as airbench weighs its views: half the mean of the
// image and its mirror image, half the same over the image moved one pixel up-left and one
// pixel down-right (6 views). Also the accuracy of the first two views alone (`flip_only`).
// In eval mode, the inputs normalised as `normalise` says.
double tta_accuracy(gpudl::Module& net, const gpudl::data::TensorDataset& test, gpudl::Device device,
                    const gpudl::data::AugmentOptions& normalise, double& flip_only) {
  using namespace gpudl;
  const bool was_training = net.is_training();
  net.eval();
  const std::int64_t n = test.size(), batch = 500;
  const std::vector<std::int64_t> labels = test.labels().to_vector<std::int64_t>();
  std::int64_t correct = 0, correct_flip = 0;
  struct View {
    int dy, dx;
    bool flip;
    float weight;
  };
  const View views[] = {{0, 0, false, 0.25f}, {0, 0, true, 0.25f},  {1, 1, false, 0.125f},
                        {1, 1, true, 0.125f}, {-1, -1, false, 0.125f}, {-1, -1, true, 0.125f}};
  for (std::int64_t start = 0; start < n; start += batch) {
    const std::int64_t stop = std::min(start + batch, n);
    const Tensor images = test.inputs().slice(start, stop);
    const std::vector<float> pixels = images.to_vector<float>();
    std::vector<float> logits, flip_logits;
    for (const View& v : views) {
      const Tensor x = Tensor::from_vector(shifted_view(pixels, images.shape(), v.dy, v.dx, v.flip), images.shape())
                           .to(device);
      Tensor normalised = Tensor::empty(x.shape(), DType::kF32, device);
      data::augment(normalised, x, normalise, 0, 0, Context::get(device).exec());
      const std::vector<float> out = net.forward(normalised).as(DType::kF32).to_vector<float>();
      if (logits.empty()) logits.assign(out.size(), 0.0f);
      if (flip_logits.empty()) flip_logits.assign(out.size(), 0.0f);
      for (std::size_t k = 0; k < out.size(); ++k) {
        logits[k] += v.weight * out[k];
        if (v.dy == 0) flip_logits[k] += out[k];
      }
    }
    const std::size_t classes = logits.size() / static_cast<std::size_t>(stop - start);
    auto argmax = [&](const std::vector<float>& all, std::int64_t i) {
      const auto row = all.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(i - start) * classes);
      return std::max_element(row, row + static_cast<std::ptrdiff_t>(classes)) - row;
    };
    for (std::int64_t i = start; i < stop; ++i) {
      correct += argmax(logits, i) == labels[static_cast<std::size_t>(i)];
      correct_flip += argmax(flip_logits, i) == labels[static_cast<std::size_t>(i)];
    }
  }
  net.set_training(was_training);
  const double total = static_cast<double>(std::max<std::int64_t>(n, 1));
  flip_only = static_cast<double>(correct_flip) / total;
  return static_cast<double>(correct) / total;
}

// Up to `count` training images spread evenly over the folder (which is sorted by class, so its
// first images would all be of one class), decoded as training will see them: the sample the
// normalisation statistics and airbench's whitening come from.
gpudl::Tensor folder_sample(const gpudl::data::ImageFolder& folder, const gpudl::data::ImageOptions& options,
                            std::int64_t count) {
  using namespace gpudl;
  const std::int64_t n = std::min(count, folder.size());
  const std::int64_t side = options.image_size;
  std::vector<float> pixels;
  std::vector<float> one;
  std::int64_t kept = 0;
  for (std::int64_t k = 0; k < n; ++k) {
    if (data::load_image_sample(folder, k * folder.size() / n, options, 0, 0, side, side, one)) {
      pixels.insert(pixels.end(), one.begin(), one.end());
      ++kept;
    }
  }
  return Tensor::from_vector(pixels, Shape{kept, 3, side, side});
}

// Per-channel mean and standard deviation of `images` (N, 3, H, W): the folder's normalisation.
gpudl::data::AugmentOptions normalization_of(const gpudl::Tensor& images) {
  const std::vector<float> x = images.to_vector<float>();
  const std::int64_t n = images.dim(0), plane = images.dim(2) * images.dim(3);
  gpudl::data::AugmentOptions o;
  for (std::int64_t c = 0; c < 3; ++c) {
    double sum = 0.0, squares = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      const float* p = x.data() + (i * 3 + c) * plane;
      for (std::int64_t j = 0; j < plane; ++j) {
        sum += p[j];
        squares += static_cast<double>(p[j]) * p[j];
      }
    }
    const double count = static_cast<double>(n * plane);
    const double mean = sum / count;
    o.mean.push_back(static_cast<float>(mean));
    o.stddev.push_back(static_cast<float>(std::sqrt(std::max(squares / count - mean * mean, 1e-12))));
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace gpudl;
  examples::Args args("cnn_cifar10",
                      "Trains a CNN on CIFAR-10 (or, without the files, on a built-in synthetic CIFAR-style set).");
  args.option("data", "",
              "CIFAR-10 binary folder (data_batch_1.bin ... test_batch.bin), an image-folder root (train/<class>/*.png|jpg "
              "and test/<class>/...), or 'synthetic'; default: $GPUDL_DATA_DIR/cifar-10-batches-bin, else "
              "../shared/data/cifar-10-batches-bin, else synthetic")
      .option("image-size", "0",
              "image folders: each image's shorter side resized to N and the central N x N kept (0: 32; the binary and "
              "synthetic sets are 32 x 32)")
      .option("workers", "0", "image folders: decoding threads (0: one per core, at most 8)")
      .option("random-resized-crop", "0",
              "image folders: train on random windows of 8-100% of each image's area, aspect 3/4-4/3, resized to "
              "--image-size (1), or on the central square (0); before the crops and flips of --augment")
      .option("skip-bad", "0", "image folders: leave out, and count, files that do not decode (1) or stop naming the first (0)")
      .option("device", "auto", "auto, cpu, cuda or cuda:N")
      .option("precision", "auto", examples::kPrecisionHelp)
      .option("model", "auto",
              "quick (small, for CPUs), resnet (for GPUs) or airbench (the speed-run network and recipe: whitened "
              "first layer, label smoothing, lookahead, test-time augmentation); auto: resnet on a GPU, else quick")
      .option("epochs", "0", "passes over the training set (0: 15 for quick, 30 for resnet, 12 for airbench)")
      .option("batch", "0",
              "samples per step on each rank, x ranks under mpirun (0: 128 for quick, 512 for resnet, 1024 for airbench)")
      .option("accumulate", "1", examples::kAccumulateHelp)
      .option("lr", "0", "peak learning rate of the schedule (0: 0.1 for quick, 0.4 for resnet, 1.5 for airbench)")
      .option("seed", "1", "seed for initialisation, data order and augmentation")
      .option("augment", "1", "random crops and flips (1) or none (0)")
      .option("graph", "auto",
              "CUDA graph of the training step: on (captured after warm-up and replayed, where nothing in the run "
              "forbids it; the run says why not otherwise), off, or auto (off until checked on a GPU)")
      .option("synthetic-size", "20000", "training images of the synthetic set (test: a fifth of it)")
      .option("limit", "0", "use only the first N training images (0: all)")
      .option("metrics", "", "JSON-lines metrics file")
      .option("tensorboard", "", examples::kTensorBoardHelp)
      .option("ema", "0", examples::kEmaHelp)
      .option("checkpoint", "", "safetensors checkpoint written after each epoch")
      .option("resume", "", "checkpoint to continue from")
      .option("export", "", examples::kExportHelp)
      .option("export-onnx", "", examples::kExportOnnxHelp);
  args.parse(argc, argv);

  // Every flag is read and checked here, before the data are loaded or generated.
  std::string model_name = args.choice("model", {"auto", "quick", "resnet", "airbench"});
  const std::uint64_t seed = args.unsigned_integer("seed");
  const int epochs_flag = static_cast<int>(args.integer("epochs", 0, std::numeric_limits<int>::max()));
  const std::int64_t batch_flag = args.integer("batch");
  const std::int64_t accumulate = examples::accumulate(args);
  const double lr_flag = args.number("lr");
  args.require(lr_flag >= 0, "lr", "a learning rate > 0, or 0 for the model's default");
  const bool augment_flag = args.boolean("augment");
  const std::string graph = args.choice("graph", {"auto", "on", "off"});
  const std::int64_t synthetic_size = args.integer("synthetic-size", 10);
  const std::int64_t limit = args.integer("limit");
  const std::int64_t image_size_flag = args.integer("image-size");
  const std::int64_t workers = args.integer("workers");
  args.require(workers <= 64, "workers", "a thread count from 0 (automatic) to 64");
  const bool skip_bad = args.boolean("skip-bad");
  const bool random_resized_crop = args.boolean("random-resized-crop");
  // Only image folders are resized and cropped (the default data are never folders).
  const bool folder = !args.str("data").empty() && args.str("data") != "synthetic" &&
                      data::is_image_folder_root(args.str("data"));
  if (!folder && image_size_flag != 0 && image_size_flag != 32) {
    throw std::invalid_argument("--image-size: the binary CIFAR-10 and synthetic sets are 32 x 32; resizing is for "
                                "image folders (--data ROOT with train/ and test/)");
  }
  if (!folder && random_resized_crop) {
    throw std::invalid_argument("--random-resized-crop: applies to image folders (--data ROOT) only");
  }
  examples::check_trainer_files(args);
  examples::check_writable(args, "export");
  // Last, since "auto" may print a note about the GPU it looked for.
  const Device device = Device::parse(args.str("device"));
  const Precision precision = examples::precision(args, device);
  if (model_name == "auto") model_name = device.is_cuda() ? "resnet" : "quick";
  const Recipe recipe = recipe_for(model_name);
  const bool airbench = model_name == "airbench";

  // The data: real CIFAR-10 when a folder is given or found, else the synthetic set.
  std::string dir = args.str("data");
  if (dir.empty()) {
    const char* env = std::getenv("GPUDL_DATA_DIR");
    if (env != nullptr && *env != '\0' && is_dir(std::string(env) + "/cifar-10-batches-bin")) {
      dir = std::string(env) + "/cifar-10-batches-bin";
    } else if (is_dir("../shared/data/cifar-10-batches-bin")) {
      dir = "../shared/data/cifar-10-batches-bin";
    } else {
      dir = "synthetic";
    }
  }
  data::TensorDataset train, test;
  std::string data_name;
  const std::int64_t image_size = image_size_flag > 0 ? image_size_flag : 32;
  if (folder && limit > 0) throw std::invalid_argument("--limit: applies to the binary and synthetic sets only");

  // Image folders: training batches decoded ahead by worker threads; the test split in memory.
  std::unique_ptr<data::ImageFolderLoader> folder_train;
  std::vector<std::string> class_names = data::cifar10_class_names();
  data::AugmentOptions normalization = data::cifar10_normalization();
  Tensor whitening_sample;
  if (folder) {
    const data::ImageOptions image{.image_size = image_size, .skip_bad = skip_bad};
    data::ImageFolder train_folder(dir + "/train");
    data::ImageFolder test_folder(dir + "/test");
    if (train_folder.classes() != test_folder.classes()) {
      throw IoError(dir + ": train/ has " + std::to_string(train_folder.classes().size()) + " classes and test/ " +
                    std::to_string(test_folder.classes().size()) + "; both need the same class folders");
    }
    class_names = train_folder.classes();
    test = data::load_image_folder(test_folder, image, static_cast<int>(workers));
    whitening_sample = folder_sample(train_folder, image, 5000);
    normalization = normalization_of(whitening_sample);
    const std::int64_t batch = batch_flag > 0 ? batch_flag : recipe.batch;
    folder_train = std::make_unique<data::ImageFolderLoader>(
        train_folder,
        data::ImageLoaderOptions{.loader = {.batch = batch, .shuffle = true, .drop_last = airbench, .seed = seed,
                                            .rank = dist::rank(), .world = examples::ranks()},
                                 .image = {.image_size = image_size,
                                           .random_resized_crop = random_resized_crop,
                                           .skip_bad = skip_bad},
                                 .workers = static_cast<int>(workers)});
    data_name = "image folders in " + dir + " (" + std::to_string(class_names.size()) + " classes, " +
                std::to_string(image_size) + " x " + std::to_string(image_size) + ", decoded by " +
                std::to_string(workers > 0 ? workers : std::clamp<unsigned>(std::thread::hardware_concurrency(), 1, 8)) +
                " threads)";
  } else if (dir == "synthetic") {
    const std::int64_t n = synthetic_size;
    train = data::synthetic_cifar(n, seed);
    test = data::synthetic_cifar(std::max<std::int64_t>(n / 5, 10), seed + 1000003);
    data_name = "synthetic CIFAR-style data (" + std::to_string(n) + " generated images" +
                (args.str("data").empty() ? std::string("; no CIFAR-10 files found: pass --data DIR for the real set)")
                                          : std::string(")"));
  } else {
    train = data::cifar10(dir, data::Split::kTrain);
    test = data::cifar10(dir, data::Split::kTest);
    data_name = "CIFAR-10 from " + dir;
  }
  if (limit > 0) train = train.take(std::min(limit, train.size()));
  const std::int64_t train_size = folder ? folder_train->folder().size() : train.size();

  manual_seed(seed);
  Sequential net = models::cifar_model(model_name, static_cast<std::int64_t>(class_names.size()), image_size);
  net.to(device);
  if (airbench) {
    // The whitening filters from the patches of (up to) 5,000 training images, normalised as
    // training will see them.
    const Tensor sample =
        folder ? whitening_sample : train.inputs().slice(0, std::min<std::int64_t>(train.size(), 5000));
    Tensor normalised = Tensor::empty(sample.shape());
    data::augment(normalised, sample, normalization, 0, 0, Context::get(Device::cpu()).exec());
    models::init_patch_whitening(net[0], normalised);
  }
  const std::int64_t batch = batch_flag > 0 ? batch_flag : recipe.batch;
  std::printf("cnn_cifar10 --model %s on %s (%s)%s\ndata: %s, %lld train / %lld test images\n%s", model_name.c_str(),
              device.str().c_str(), device.name().c_str(), examples::effective_batch(batch, accumulate).c_str(),
              data_name.c_str(), static_cast<long long>(train_size), static_cast<long long>(test.size()),
              net.summary({3, image_size, image_size}).c_str());

  TrainerOptions o;
  o.precision = precision;
  o.batch = batch;
  o.accumulate = accumulate;
  o.epochs = epochs_flag > 0 ? epochs_flag : recipe.epochs;
  o.seed = seed;
  o.log_every = 50;
  o.metrics = args.str("metrics");
  o.tensorboard = args.str("tensorboard");
  o.ema = examples::ema_decay(args);
  o.cuda_graph = graph == "on"    ? TrainerOptions::GraphMode::kOn
                 : graph == "off" ? TrainerOptions::GraphMode::kOff
                                  : TrainerOptions::GraphMode::kAuto;
  o.checkpoint = args.str("checkpoint");
  o.resume = args.str("resume");
  data::AugmentOptions augment = normalization;
  augment.horizontal_flip = true;
  augment.crop_padding = recipe.crop_padding;
  if (!augment_flag) {
    augment.crop_padding = 0;
    augment.horizontal_flip = false;
  }
  o.augment = augment;
  o.eval_augment = normalization;
  const double lr = lr_flag > 0 ? lr_flag : recipe.lr;
  // airbench drops each epoch's last partial batch, as the published recipe does.
  o.drop_last = airbench;
  const std::int64_t per_epoch =
      folder ? (folder_train->batches_per_epoch() + o.accumulate - 1) / o.accumulate
             : examples::steps_per_epoch(train, o.batch, o.accumulate, o.drop_last);
  const std::int64_t steps = std::max<std::int64_t>(o.epochs * per_epoch, 1);
  if (airbench) {
    o.augment->reflect_padding = true;
    o.schedule = airbench_schedule(lr, steps);
  } else {
    o.schedule = std::make_shared<OneCycleLR>(lr, steps, recipe.warmup);
  }
  SGD opt(airbench ? models::airbench_trained_parameters(net) : net.parameters(),
          {.lr = lr, .momentum = recipe.momentum, .weight_decay = recipe.weight_decay, .nesterov = true});
  std::unique_ptr<AirbenchSteps> airbench_steps;
  if (airbench) {
    // The batch norms' biases learn 64 times faster, with their weight decay kept as it was.
    const std::vector<Parameter*> norm_biases = models::airbench_norm_biases(net);
    for (std::size_t i = 0; i < opt.params().size(); ++i) {
      if (std::find(norm_biases.begin(), norm_biases.end(), opt.params()[i]) != norm_biases.end()) {
        opt.set_param_scale(i, 64.0, 1.0 / 64.0);
      }
    }
    airbench_steps = std::make_unique<AirbenchSteps>(net, opt, std::max<std::int64_t>(per_epoch, 1), steps);
  }
  CrossEntropyLoss loss({.label_smoothing = recipe.label_smoothing});
  Trainer* trainer_ptr = nullptr;
  if (airbench) {
    // The hook runs before the Trainer counts the step it follows.
    o.after_step = [&] { airbench_steps->after(trainer_ptr->global_step() + 1); };
    // Its work is device work on the parameters where they lie, and a group factor's change
    // captures the step anew: a captured step may be replayed before it.
    o.after_step_graph_safe = true;
    o.checkpoint_extra = [&] { return airbench_steps->state(); };
    o.restore_extra = [&](const std::string& path, const std::vector<NamedTensor>& extra) {
      airbench_steps->load(path, extra);
    };
  }
  // Checkpoints and --export describe themselves: predict and load_model(path) need no code.
  const ModelInfo info{.classes = class_names,
                       .mean = normalization.mean,
                       .stddev = normalization.stddev,
                       .input_shape = {3, image_size, image_size}};
  o.checkpoint_metadata = model_metadata(net, info);
  Trainer trainer(net, opt, loss, o);
  trainer_ptr = &trainer;
  const json::Object extra{{"model", model_name},
                           {"data", folder ? "folder" : dir == "synthetic" ? "synthetic" : "cifar10"}};
  if (folder) {
    data::DataLoader test_loader(test, {.batch = o.eval_batch, .shuffle = false});
    examples::fit_and_report(trainer, *folder_train, test_loader, device, extra);
    if (folder_train->skipped() > 0) {
      std::printf("skipped %lld files of %s/train that do not decode as images\n",
                  static_cast<long long>(folder_train->skipped()), dir.c_str());
    }
  } else {
    examples::fit_and_report(trainer, train, test, device, extra);
  }
  if (airbench) {
    // Rank 0 alone: the others' models are the same replica.
    double flip = 0.0;
    const double tta = tta_accuracy(net, test, device, normalization, flip);
    if (dist::rank() == 0) {
      std::printf("test accuracy with test-time augmentation %.2f%% (6 views: mirrored, moved a pixel), %.2f%% "
                  "(2 views: mirrored)\n",
                  100.0 * tta, 100.0 * flip);
      trainer.write_metrics(
          json::Object{{"event", "tta"}, {"test_accuracy", tta}, {"views", 6}, {"flip_test_accuracy", flip}});
    }
  }
  examples::export_if_asked(args, net, precision, info);
  examples::export_onnx_if_asked(args, net, {-1, 3, image_size, image_size});
  std::printf("data: %s\n", data_name.c_str());
  return 0;
} catch (const std::exception& e) {
  return examples::fail("cnn_cifar10", e);
}
