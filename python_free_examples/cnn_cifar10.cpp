// cnn_cifar10: the main job — a CNN (quick for CPUs, resnet for GPUs, airbench for the speed-run
// recipe) trained on CIFAR-10 with SGD + Nesterov momentum, one-cycle learning rate, weight
// decay and augmentation.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

#include "gpudl/layers/models/cifar.h"
#include "example_train.h"
#include "gpudl/core/data/cifar.h"
#include "gpudl/gpudl.h"

namespace {

bool is_dir(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Each model's training recipe: what the 0 defaults of the flags stand for.
struct Recipe {
  int epochs;
  std::int64_t batch;
  double lr;
  double weight_decay;
  int crop_padding;
  float label_smoothing;
  double warmup;  // the one-cycle schedule's rising part, as a share of the steps
};

Recipe recipe_for(const std::string& model) {
  if (model == "quick") return {15, 128, 0.1, 5e-4, 4, 0.0f, 0.25};
  if (model == "resnet") return {30, 512, 0.4, 5e-4, 4, 0.0f, 0.25};
  // airbench, after the published recipe's shape: label smoothing 0.2, translations of up to 2
  // pixels, a short warm-up, and the batch norms' scales and the whitening filters kept fixed.
  return {10, 512, 0.4, 5e-4, 2, 0.2f, 0.2};
}

// Test accuracy with flip test-time augmentation: each image's logits and its mirror image's
// summed (in eval mode, inputs normalised as `normalise` says).
double flip_tta_accuracy(gpudl::Module& net, const gpudl::data::TensorDataset& test, gpudl::Device device,
                         const gpudl::data::AugmentOptions& normalise) {
  using namespace gpudl;
  const bool was_training = net.is_training();
  net.eval();
  const std::int64_t n = test.size(), batch = 500;
  const std::vector<std::int64_t> labels = test.labels().to_vector<std::int64_t>();
  std::int64_t correct = 0;
  for (std::int64_t start = 0; start < n; start += batch) {
    const std::int64_t stop = std::min(start + batch, n);
    const Tensor images = test.inputs().slice(start, stop);
    std::vector<float> mirrored = images.to_vector<float>();
    const std::int64_t w = images.dim(3);
    for (std::size_t row = 0; row < mirrored.size(); row += static_cast<std::size_t>(w)) {
      std::reverse(mirrored.begin() + static_cast<std::ptrdiff_t>(row),
                   mirrored.begin() + static_cast<std::ptrdiff_t>(row) + w);
    }
    std::vector<float> logits;
    for (const Tensor& view : {images, Tensor::from_vector(mirrored, images.shape())}) {
      const Tensor x = view.to(device);
      Tensor normalised = Tensor::empty(x.shape(), DType::kF32, device);
      data::augment(normalised, x, normalise, 0, 0, Context::get(device).exec());
      const std::vector<float> out = net.forward(normalised).as(DType::kF32).to_vector<float>();
      if (logits.empty()) {
        logits = out;
      } else {
        for (std::size_t k = 0; k < out.size(); ++k) logits[k] += out[k];
      }
    }
    const std::size_t classes = logits.size() / static_cast<std::size_t>(stop - start);
    for (std::int64_t i = start; i < stop; ++i) {
      const auto row = logits.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(i - start) * classes);
      correct += std::max_element(row, row + static_cast<std::ptrdiff_t>(classes)) - row ==
                 labels[static_cast<std::size_t>(i)];
    }
  }
  net.set_training(was_training);
  return static_cast<double>(correct) / static_cast<double>(std::max<std::int64_t>(n, 1));
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace gpudl;
  examples::Args args("cnn_cifar10",
                      "Trains a CNN on CIFAR-10 (or, without the files, on a built-in synthetic CIFAR-style set).");
  args.option("data", "",
              "CIFAR-10 binary folder (data_batch_1.bin ... test_batch.bin), or 'synthetic'; default: "
              "$GPUDL_DATA_DIR/cifar-10-batches-bin, else ../shared/data/cifar-10-batches-bin, else synthetic")
      .option("device", "auto", "auto, cpu, cuda or cuda:N")
      .option("precision", "auto", examples::kPrecisionHelp)
      .option("model", "auto",
              "quick (small, for CPUs), resnet (for GPUs) or airbench (the speed-run network and recipe: whitened "
              "first layer, label smoothing, flip test-time augmentation); auto: resnet on a GPU, else quick")
      .option("epochs", "0", "passes over the training set (0: 15 for quick, 30 for resnet, 10 for airbench)")
      .option("batch", "0",
              "samples per step on each rank, x ranks under mpirun (0: 128 for quick, 512 for resnet and airbench)")
      .option("lr", "0", "peak learning rate of the one-cycle schedule (0: 0.1 for quick, 0.4 for the others)")
      .option("seed", "1", "seed for initialisation, data order and augmentation")
      .option("augment", "1", "random crops and flips (1) or none (0)")
      .option("graph", "auto",
              "CUDA graph of the training step: on (captured after warm-up and replayed, where nothing in the run "
              "forbids it; the run says why not otherwise), off, or auto (off until checked on a GPU)")
      .option("synthetic-size", "20000", "training images of the synthetic set (test: a fifth of it)")
      .option("limit", "0", "use only the first N training images (0: all)")
      .option("metrics", "", "JSON-lines metrics file")
      .option("checkpoint", "", "safetensors checkpoint written after each epoch")
      .option("resume", "", "checkpoint to continue from")
      .option("export", "", examples::kExportHelp);
  args.parse(argc, argv);

  // Every flag is read and checked here, before the data are loaded or generated.
  std::string model_name = args.choice("model", {"auto", "quick", "resnet", "airbench"});
  const std::uint64_t seed = args.unsigned_integer("seed");
  const int epochs_flag = static_cast<int>(args.integer("epochs", 0, std::numeric_limits<int>::max()));
  const std::int64_t batch_flag = args.integer("batch");
  const double lr_flag = args.number("lr");
  args.require(lr_flag >= 0, "lr", "a learning rate > 0, or 0 for the model's default");
  const bool augment_flag = args.boolean("augment");
  const std::string graph = args.choice("graph", {"auto", "on", "off"});
  const std::int64_t synthetic_size = args.integer("synthetic-size", 10);
  const std::int64_t limit = args.integer("limit");
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
  if (dir == "synthetic") {
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

  manual_seed(seed);
  Sequential net = models::cifar_model(model_name);
  net.to(device);
  if (airbench) {
    // The whitening filters from the patches of (up to) 5,000 training images, normalised as
    // training will see them.
    const Tensor sample = train.inputs().slice(0, std::min<std::int64_t>(train.size(), 5000));
    Tensor normalised = Tensor::empty(sample.shape());
    data::augment(normalised, sample, data::cifar10_normalization(), 0, 0, Context::get(Device::cpu()).exec());
    models::init_patch_whitening(net[0], normalised);
  }
  std::printf("cnn_cifar10 --model %s on %s (%s)\ndata: %s, %lld train / %lld test images\n%s", model_name.c_str(),
              device.str().c_str(), device.name().c_str(), data_name.c_str(), static_cast<long long>(train.size()),
              static_cast<long long>(test.size()), net.summary({3, 32, 32}).c_str());

  TrainerOptions o;
  o.precision = precision;
  o.batch = batch_flag > 0 ? batch_flag : recipe.batch;
  o.epochs = epochs_flag > 0 ? epochs_flag : recipe.epochs;
  o.seed = seed;
  o.log_every = 50;
  o.metrics = args.str("metrics");
  o.cuda_graph = graph == "on"    ? TrainerOptions::GraphMode::kOn
                 : graph == "off" ? TrainerOptions::GraphMode::kOff
                                  : TrainerOptions::GraphMode::kAuto;
  o.checkpoint = args.str("checkpoint");
  o.resume = args.str("resume");
  data::AugmentOptions augment = data::cifar10_augmentation();
  augment.crop_padding = recipe.crop_padding;
  if (!augment_flag) {
    augment.crop_padding = 0;
    augment.horizontal_flip = false;
  }
  o.augment = augment;
  o.eval_augment = data::cifar10_normalization();
  const double lr = lr_flag > 0 ? lr_flag : recipe.lr;
  const std::int64_t steps = o.epochs * examples::steps_per_epoch(train, o.batch);
  o.schedule = std::make_shared<OneCycleLR>(lr, std::max<std::int64_t>(steps, 1), recipe.warmup);
  SGD opt(airbench ? models::airbench_trained_parameters(net) : net.parameters(),
          {.lr = lr, .momentum = 0.9, .weight_decay = recipe.weight_decay, .nesterov = true});
  CrossEntropyLoss loss({.label_smoothing = recipe.label_smoothing});
  Trainer trainer(net, opt, loss, o);
  examples::fit_and_report(trainer, train, test, device,
                           {{"model", model_name}, {"data", dir == "synthetic" ? "synthetic" : "cifar10"}});
  if (airbench) {
    // Rank 0 alone: the others' models are the same replica.
    const double tta = flip_tta_accuracy(net, test, device, data::cifar10_normalization());
    if (dist::rank() == 0) {
      std::printf("test accuracy with flip test-time augmentation %.2f%%\n", 100.0 * tta);
      trainer.write_metrics(json::Object{{"event", "tta"}, {"test_accuracy", tta}, {"views", 2}});
    }
  }
  examples::export_if_asked(args, net, precision);
  std::printf("data: %s\n", data_name.c_str());
  return 0;
} catch (const std::exception& e) {
  return examples::fail("cnn_cifar10", e);
}
