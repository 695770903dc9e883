// lenet_mnist: a LeNet-5-style convolutional network on MNIST (conv 5×5, max-pool, conv 5×5,
// max-pool, three fully connected layers), trained with Adam.
#include <cstdio>
#include <limits>

#include "example_train.h"
#include "gpudl/gpudl.h"

int main(int argc, char** argv) try {
  using namespace gpudl;
  examples::Args args("lenet_mnist", "Trains a LeNet-5-style CNN on MNIST and reports test accuracy.");
  args.option("data", "", "MNIST folder with the four IDX files (.gz or plain); default $GPUDL_DATA_DIR/mnist")
      .option("device", "auto", "auto, cpu, cuda or cuda:N")
      .option("precision", "auto", examples::kPrecisionHelp)
      .option("epochs", "6", "passes over the training set")
      .option("batch", "128", "samples per step on each rank (mpirun: x ranks in all)")
      .option("accumulate", "1", examples::kAccumulateHelp)
      .option("lr", "0.002", "Adam learning rate (cosine-annealed to 0 over the run)")
      .option("seed", "1", "seed for initialisation and data order")
      .option("metrics", "", "JSON-lines metrics file")
      .option("tensorboard", "", examples::kTensorBoardHelp)
      .option("ema", "0", examples::kEmaHelp)
      .option("checkpoint", "", "safetensors checkpoint written after each epoch")
      .option("resume", "", "checkpoint to continue from")
      .option("export", "", examples::kExportHelp)
      .option("export-onnx", "", examples::kExportOnnxHelp)
      .option("limit", "0", "use only the first N training samples (0: all)");
  args.parse(argc, argv);


  // Every flag is read and checked here, before the data are loaded.
  const std::uint64_t seed = args.unsigned_integer("seed");
  const int epochs = static_cast<int>(args.integer("epochs", 0, std::numeric_limits<int>::max()));
  const std::int64_t batch = args.integer("batch", 1);
  const std::int64_t accumulate = examples::accumulate(args);
  const double lr = args.number("lr");
  args.require(lr > 0, "lr", "a learning rate > 0");
  args.integer("limit");  // read again by load_mnist
  examples::check_trainer_files(args);
  examples::check_writable(args, "export");
  // Last, since "auto" may print a note about the GPU it looked for.
  const Device device = Device::parse(args.str("device"));
  const Precision precision = examples::precision(args, device);

  auto [train, test] = examples::load_mnist(args);

  manual_seed(seed);
  // LeCun et al. (1998), with ReLU and max-pooling as is usual today; "same" padding on the
  // first convolution keeps the 32×32 geometry of the original on 28×28 digits.
  Sequential net{Conv2d(1, 6, 5, {.padding = 2}), ReLU(), MaxPool2d(2),
                 Conv2d(6, 16, 5), ReLU(), MaxPool2d(2),
                 Flatten(), Linear(400, 120), ReLU(), Linear(120, 84), ReLU(), Linear(84, 10)};
  net.to(device);
  std::printf("lenet_mnist on %s (%s): %lld train / %lld test samples%s\n%s", device.str().c_str(),
              device.name().c_str(), static_cast<long long>(train.size()), static_cast<long long>(test.size()),
              examples::effective_batch(batch, accumulate).c_str(), net.summary({1, 28, 28}).c_str());

  Adam opt(net.parameters(), {.lr = lr});
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.precision = precision;
  o.batch = batch;
  o.accumulate = accumulate;
  o.epochs = epochs;
  o.seed = seed;
  o.log_every = 100;
  o.metrics = args.str("metrics");
  o.tensorboard = args.str("tensorboard");
  o.ema = examples::ema_decay(args);
  o.checkpoint = args.str("checkpoint");
  o.resume = args.str("resume");
  const std::int64_t steps = o.epochs * examples::steps_per_epoch(train, o.batch, o.accumulate);
  o.schedule = std::make_shared<CosineLR>(lr, std::max<std::int64_t>(steps, 1));
  // Checkpoints and --export describe themselves (layers/architecture.h).
  const ModelInfo info{.classes = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
                       .mean = {0.1307f},
                       .stddev = {0.3081f},
                       .input_shape = {1, 28, 28}};
  o.checkpoint_metadata = model_metadata(net, info);
  Trainer trainer(net, opt, loss, o);
  examples::fit_and_report(trainer, train, test, device);
  examples::export_if_asked(args, net, precision, info);
  examples::export_onnx_if_asked(args, net, {-1, 1, 28, 28});
  return 0;
} catch (const std::exception& e) {
  return examples::fail("lenet_mnist", e);
}
