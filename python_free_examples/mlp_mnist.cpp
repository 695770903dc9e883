// mlp_mnist: a 784-512-512-10 multilayer perceptron with dropout, trained on MNIST with Adam.
#include <cmath>
#include <cstdio>
#include <limits>

#include "example_train.h"
#include "gpudl/core/data/mnist.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/gpudl.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"

int main(int argc, char** argv) try {
  using namespace gpudl;
  examples::Args args("mlp_mnist", "Trains a 784-512-512-10 MLP with dropout on MNIST and reports test accuracy.");
  args.option("data", "", "MNIST folder with the four IDX files (.gz or plain); default $GPUDL_DATA_DIR/mnist")
      .option("device", "auto", "auto, cpu, cuda or cuda:N")
      .option("precision", "auto", examples::kPrecisionHelp)
      .option("epochs", "8", "passes over the training set")
      .option("batch", "128", "samples per step on each rank (mpirun: x ranks in all)")
      .option("accumulate", "1", examples::kAccumulateHelp)
      .option("lr", "0.001", "Adam learning rate (cosine-annealed to 0 over the run)")
      .option("dropout", "0.2", "dropout probability after each hidden layer")
      .option("hidden", "512", "units in each hidden layer")
      .option("seed", "1", "seed for initialisation, dropout and data order")
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
  const std::int64_t hidden = args.integer("hidden", 1);
  const double lr = args.number("lr");
  args.require(lr > 0, "lr", "a learning rate > 0");
  const double dropout = args.number("dropout");
  args.require(dropout >= 0 && dropout < 1, "dropout", "a probability in [0, 1)");
  args.integer("limit");  // read again by load_mnist
  examples::check_trainer_files(args);
  examples::check_writable(args, "export");
  // Last, since "auto" may print a note about the GPU it looked for.
  const Device device = Device::parse(args.str("device"));
  const Precision precision = examples::precision(args, device);

  auto [train, test] = examples::load_mnist(args);

  manual_seed(seed);
  const float p = static_cast<float>(dropout);
  Sequential net{Flatten(),     Linear(784, hidden), ReLU(), Dropout(p), Linear(hidden, hidden),
                 ReLU(),        Dropout(p),          Linear(hidden, 10)};
  net.to(device);
  std::printf("mlp_mnist on %s (%s): %lld train / %lld test samples%s\n%s", device.str().c_str(),
              device.name().c_str(), static_cast<long long>(train.size()), static_cast<long long>(test.size()),
              examples::effective_batch(batch, accumulate).c_str(), net.summary({1, 28, 28}).c_str());

  Adam opt(net.parameters(), {.lr = lr});
  CrossEntropyLoss loss;
  const std::int64_t steps = epochs * examples::steps_per_epoch(train, batch, accumulate);
  // Field by field rather than designated initialisers, which would have to name every hook.
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
  return examples::fail("mlp_mnist", e);
}
