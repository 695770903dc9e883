// mlp_mnist: a 784-512-512-10 multilayer perceptron with dropout, trained on MNIST with Adam.
#include <cmath>
#include <cstdio>

#include "example_train.h"
#include "gpudl/core/mnist.h"
#include "gpudl/core/trainer.h"
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
      .option("epochs", "8", "passes over the training set")
      .option("batch", "128", "samples per step")
      .option("lr", "0.001", "Adam learning rate (cosine-annealed to 0 over the run)")
      .option("dropout", "0.2", "dropout probability after each hidden layer")
      .option("hidden", "512", "units in each hidden layer")
      .option("seed", "1", "seed for initialisation, dropout and data order")
      .option("metrics", "", "JSON-lines metrics file")
      .option("checkpoint", "", "safetensors checkpoint written after each epoch")
      .option("resume", "", "checkpoint to continue from")
      .option("limit", "0", "use only the first N training samples (0: all)");
  args.parse(argc, argv);

  const Device device = Device::parse(args.str("device"));
  const std::uint64_t seed = static_cast<std::uint64_t>(args.integer("seed"));
  const std::int64_t hidden = args.integer("hidden", 1);
  auto [train, test] = examples::load_mnist(args);

  manual_seed(seed);
  const float p = static_cast<float>(args.number("dropout"));
  Sequential net{Flatten(),     Linear(784, hidden), ReLU(), Dropout(p), Linear(hidden, hidden),
                 ReLU(),        Dropout(p),          Linear(hidden, 10)};
  net.to(device);
  std::printf("mlp_mnist on %s (%s): %lld train / %lld test samples\n%s", device.str().c_str(), device.name().c_str(),
              static_cast<long long>(train.size()), static_cast<long long>(test.size()),
              net.summary({1, 28, 28}).c_str());

  Adam opt(net.parameters(), {.lr = args.number("lr")});
  CrossEntropyLoss loss;
  const int epochs = static_cast<int>(args.integer("epochs"));
  const std::int64_t batch = args.integer("batch", 1);
  const std::int64_t steps = epochs * ((train.size() + batch - 1) / batch);
  Trainer trainer(net, opt, loss,
                  {.batch = batch,
                   .epochs = epochs,
                   .seed = seed,
                   .log_every = 100,
                   .metrics = args.str("metrics"),
                   .checkpoint = args.str("checkpoint"),
                   .resume = args.str("resume"),
                   .schedule = std::make_shared<CosineLR>(args.number("lr"), std::max<std::int64_t>(steps, 1))});
  examples::fit_and_report(trainer, train, test, device);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "mlp_mnist: error: %s\n", e.what());
  return 1;
}
