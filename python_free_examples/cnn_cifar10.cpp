// cnn_cifar10: the main job — a CNN (quick for CPUs, resnet for GPUs) trained on CIFAR-10
// with SGD + Nesterov momentum, one-cycle learning rate, weight decay and augmentation.
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <limits>

#include "gpudl/layers/models/cifar.h"
#include "example_train.h"
#include "gpudl/core/data/cifar.h"
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
      .option("precision", "auto", examples::kPrecisionHelp)
      .option("model", "auto", "quick (small, for CPUs) or resnet (for GPUs); auto picks by device")
      .option("epochs", "0", "passes over the training set (0: 15 for quick, 30 for resnet)")
      .option("batch", "0", "samples per step on each rank, x ranks under mpirun (0: 128 for quick, 512 for resnet)")
      .option("lr", "0", "peak learning rate of the one-cycle schedule (0: 0.1 for quick, 0.4 for resnet)")
      .option("seed", "1", "seed for initialisation, data order and augmentation")
      .option("augment", "1", "random crops and flips (1) or none (0)")
      .option("synthetic-size", "20000", "training images of the synthetic set (test: a fifth of it)")
      .option("limit", "0", "use only the first N training images (0: all)")
      .option("metrics", "", "JSON-lines metrics file")
      .option("checkpoint", "", "safetensors checkpoint written after each epoch")
      .option("resume", "", "checkpoint to continue from")
      .option("export", "", examples::kExportHelp);
  args.parse(argc, argv);

  // Every flag is read and checked here, before the data are loaded or generated.
  std::string model_name = args.choice("model", {"auto", "quick", "resnet"});
  const std::uint64_t seed = args.unsigned_integer("seed");
  const int epochs_flag = static_cast<int>(args.integer("epochs", 0, std::numeric_limits<int>::max()));
  const std::int64_t batch_flag = args.integer("batch");
  const double lr_flag = args.number("lr");
  args.require(lr_flag >= 0, "lr", "a learning rate > 0, or 0 for the model's default");
  const bool augment_flag = args.boolean("augment");
  const std::int64_t synthetic_size = args.integer("synthetic-size", 10);
  const std::int64_t limit = args.integer("limit");
  examples::check_trainer_files(args);
  examples::check_writable(args, "export");
  // Last, since "auto" may print a note about the GPU it looked for.
  const Device device = Device::parse(args.str("device"));
  const Precision precision = examples::precision(args, device);
  if (model_name == "auto") model_name = device.is_cuda() ? "resnet" : "quick";
  const bool quick = model_name == "quick";

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
  std::printf("cnn_cifar10 --model %s on %s (%s)\ndata: %s, %lld train / %lld test images\n%s", model_name.c_str(),
              device.str().c_str(), device.name().c_str(), data_name.c_str(), static_cast<long long>(train.size()),
              static_cast<long long>(test.size()), net.summary({3, 32, 32}).c_str());

  TrainerOptions o;
  o.precision = precision;
  o.batch = batch_flag > 0 ? batch_flag : (quick ? 128 : 512);
  o.epochs = epochs_flag > 0 ? epochs_flag : (quick ? 15 : 30);
  o.seed = seed;
  o.log_every = 50;
  o.metrics = args.str("metrics");
  o.checkpoint = args.str("checkpoint");
  o.resume = args.str("resume");
  data::AugmentOptions augment = data::cifar10_augmentation();
  if (!augment_flag) {
    augment.crop_padding = 0;
    augment.horizontal_flip = false;
  }
  o.augment = augment;
  o.eval_augment = data::cifar10_normalization();
  const double lr = lr_flag > 0 ? lr_flag : (quick ? 0.1 : 0.4);
  const std::int64_t steps = o.epochs * examples::steps_per_epoch(train, o.batch);
  o.schedule = std::make_shared<OneCycleLR>(lr, std::max<std::int64_t>(steps, 1), 0.25);
  SGD opt(net.parameters(), {.lr = lr, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true});
  CrossEntropyLoss loss;
  Trainer trainer(net, opt, loss, o);
  examples::fit_and_report(trainer, train, test, device,
                           {{"model", model_name}, {"data", dir == "synthetic" ? "synthetic" : "cifar10"}});
  examples::export_if_asked(args, net, precision);
  std::printf("data: %s\n", data_name.c_str());
  return 0;
} catch (const std::exception& e) {
  return examples::fail("cnn_cifar10", e);
}
