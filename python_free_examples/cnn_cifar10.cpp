// cnn_cifar10: the main job — a CNN (quick for CPUs, resnet for GPUs) trained on CIFAR-10
// with SGD + Nesterov momentum, one-cycle learning rate, weight decay and augmentation.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>

#include "cifar_models.h"
#include "example_train.h"
#include "gpudl/core/cifar.h"
#include "gpudl/gpudl.h"

namespace {

bool is_dir(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
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
      .option("model", "auto", "quick (small, for CPUs) or resnet (for GPUs); auto picks by device")
      .option("epochs", "0", "passes over the training set (0: 15 for quick, 30 for resnet)")
      .option("batch", "0", "samples per step (0: 128 for quick, 512 for resnet)")
      .option("lr", "0", "peak learning rate of the one-cycle schedule (0: 0.1 for quick, 0.4 for resnet)")
      .option("seed", "1", "seed for initialisation, data order and augmentation")
      .option("augment", "1", "random crops and flips (1) or none (0)")
      .option("synthetic-size", "20000", "training images of the synthetic set (test: a fifth of it)")
      .option("limit", "0", "use only the first N training images (0: all)")
      .option("metrics", "", "JSON-lines metrics file")
      .option("checkpoint", "", "safetensors checkpoint written after each epoch")
      .option("resume", "", "checkpoint to continue from");
  args.parse(argc, argv);

  const Device device = Device::parse(args.str("device"));
  std::string model_name = args.str("model");
  if (model_name == "auto") model_name = device.is_cuda() ? "resnet" : "quick";
  const bool quick = model_name == "quick";
  const std::uint64_t seed = static_cast<std::uint64_t>(args.integer("seed"));

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
    const std::int64_t n = args.integer("synthetic-size", 10);
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
  if (args.integer("limit") > 0) train = train.take(std::min(args.integer("limit"), train.size()));

  manual_seed(seed);
  Sequential net = examples::cifar_model(model_name);
  net.to(device);
  std::printf("cnn_cifar10 --model %s on %s (%s)\ndata: %s, %lld train / %lld test images\n%s", model_name.c_str(),
              device.str().c_str(), device.name().c_str(), data_name.c_str(), static_cast<long long>(train.size()),
              static_cast<long long>(test.size()), net.summary({3, 32, 32}).c_str());

  TrainerOptions o;
  o.batch = args.integer("batch") > 0 ? args.integer("batch") : (quick ? 128 : 512);
  o.epochs = static_cast<int>(args.integer("epochs") > 0 ? args.integer("epochs") : (quick ? 15 : 30));
  o.seed = seed;
  o.log_every = 50;
  o.metrics = args.str("metrics");
  o.checkpoint = args.str("checkpoint");
  o.resume = args.str("resume");
  data::AugmentOptions augment = data::cifar10_augmentation();
  if (!args.boolean("augment")) {
    augment.crop_padding = 0;
    augment.horizontal_flip = false;
  }
  o.augment = augment;
  o.eval_augment = data::cifar10_normalization();
  const double lr = args.number("lr") > 0 ? args.number("lr") : (quick ? 0.1 : 0.4);
  const std::int64_t steps = o.epochs * ((train.size() + o.batch - 1) / o.batch);
  o.schedule = std::make_shared<OneCycleLR>(lr, std::max<std::int64_t>(steps, 1), 0.25);
  SGD opt(net.parameters(), {.lr = lr, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
  CrossEntropyLoss loss;
  Trainer trainer(net, opt, loss, o);
  examples::fit_and_report(trainer, train, test, device,
                           {{"model", model_name}, {"data", dir == "synthetic" ? "synthetic" : "cifar10"}});
  std::printf("data: %s\n", data_name.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "cnn_cifar10: error: %s\n", e.what());
  return 1;
}
