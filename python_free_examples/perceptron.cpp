// perceptron: Rosenblatt's rule on linearly separable 2-D data (converges), on XOR (cannot),
// then a one-hidden-layer sigmoid network that solves XOR.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>

#include "example_args.h"
#include "example_train.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/gpudl.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"

namespace {

using namespace gpudl;

struct PerceptronRun {
  int epochs = 0;          // passes until an error-free one, or the limit
  bool converged = false;
  double accuracy = 0.0;   // after the last pass
};

// Rosenblatt's perceptron with φ(x) = (x1, x2, 1): on a mistake, w <- w + t φ(x). It is SGD
// with learning rate 1 and batch 1 on the perceptron criterion max(0, -t w·φ(x)), which is
// exactly how it runs here (Linear(2, 1) holds w and the bias weight of the constant feature).
PerceptronRun rosenblatt(const std::vector<float>& xs, const std::vector<float>& ts, Device device,
                         Precision precision, int max_epochs, std::uint64_t seed) {
  manual_seed(seed);
  Linear unit(2, 1);  // small random start: from w = 0 every point sits on the boundary
  unit.to(device);
  unit.set_precision(precision);
  SGD opt(unit.parameters(), {.lr = 1.0});
  MarginLoss criterion(0.0f);
  const std::int64_t n = static_cast<std::int64_t>(ts.size());
  const Tensor x_all = Tensor::from_vector(xs, {n, 2}, device), t_all = Tensor::from_vector(ts, {n, 1}, device);
  PerceptronRun run;
  for (run.epochs = 1; run.epochs <= max_epochs; ++run.epochs) {
    for (std::int64_t i = 0; i < n; ++i) {
      opt.zero_grad();
      criterion.forward(unit.forward(x_all.slice(i, i + 1)), t_all.slice(i, i + 1));
      unit.backward(criterion.backward());
      opt.step();
    }
    criterion.forward(unit.forward(x_all), t_all);
    run.accuracy = criterion.correct().to_vector<float>()[0] / static_cast<double>(n);
    if (run.accuracy == 1.0) {
      run.converged = true;
      return run;
    }
  }
  run.epochs = max_epochs;
  return run;
}

}  // namespace

int main(int argc, char** argv) try {
  examples::Args args("perceptron",
                      "Rosenblatt's perceptron on separable data and on XOR, then a sigmoid MLP on XOR.");
  args.option("data", "", "unused: the data are generated")
      .option("device", "auto", "auto, cpu, cuda or cuda:N")
      .option("precision", "auto", examples::kPrecisionHelp)
      .option("epochs", "100", "most passes for each perceptron run")
      .option("batch", "4", "XOR network: samples per step (all four by default)")
      .option("seed", "3", "seed for the data and the initial weights")
      .option("points", "500", "separable data set size")
      .option("metrics", "", "JSON-lines metrics file");
  args.parse(argc, argv);
  if (examples::idle_rank("perceptron")) return 0;

  // Every flag is read and checked here, before anything is generated or trained.
  const std::uint64_t seed = args.unsigned_integer("seed");
  const int max_epochs = static_cast<int>(args.integer("epochs", 1, std::numeric_limits<int>::max()));
  args.integer("batch", 1, 4);  // XOR has four samples
  const std::int64_t n = args.integer("points", 2);
  // Last, since "auto" may print a note about the GPU it looked for.
  const Device device = Device::parse(args.str("device"));
  const Precision precision = examples::precision_without_scaling(args, device);
  // No resume here: every run starts the file afresh.
  examples::MetricsFile metrics(args.str("metrics"));
  const auto start = std::chrono::steady_clock::now();

  // 1. Separable: points on either side of the line x2 = 0.5 x1 + 0.2, kept 0.02 away from it.
  Generator gen(seed);
  Tensor raw = Tensor::empty({4 * n});
  ops::uniform_(raw, -1.0f, 1.0f, gen);
  const auto r = raw.to_vector<float>();
  std::vector<float> xs, ts;
  for (std::int64_t i = 0; i < 4 * n && static_cast<std::int64_t>(ts.size()) < n; i += 2) {
    const float x1 = r[static_cast<std::size_t>(i)], x2 = r[static_cast<std::size_t>(i + 1)];
    const float side = x2 - (0.5f * x1 + 0.2f);
    if (std::abs(side) < 0.02f) continue;
    xs.insert(xs.end(), {x1, x2});
    ts.push_back(side > 0 ? 1.0f : -1.0f);
  }
  const PerceptronRun sep = rosenblatt(xs, ts, device, precision, max_epochs, seed);
  std::printf("separable (%zu points, margin 0.02): %s after %d epoch(s), accuracy %.1f%%\n", ts.size(),
              sep.converged ? "converged" : "did NOT converge", sep.epochs, 100.0 * sep.accuracy);

  // 2. XOR: no line separates it, so the rule cycles forever.
  const std::vector<float> xor_x{0, 0, 0, 1, 1, 0, 1, 1}, xor_pm{-1, 1, 1, -1}, xor_01{0, 1, 1, 0};
  const PerceptronRun xr = rosenblatt(xor_x, xor_pm, device, precision, max_epochs, seed);
  std::printf("XOR: %s after %d epoch(s), accuracy %.0f%% (not linearly separable)\n",
              xr.converged ? "converged" : "did not converge", xr.epochs, 100.0 * xr.accuracy);

  // 3. One hidden layer of sigmoids solves XOR (binary cross-entropy on the output logit).
  manual_seed(seed);
  Sequential mlp{Linear(2, 4), Sigmoid(), Linear(4, 1)};
  mlp.to(device);
  mlp.set_precision(precision);
  SGD opt(mlp.parameters(), {.lr = 2.0, .momentum = 0.9});
  BCEWithLogitsLoss bce;
  const Tensor x = Tensor::from_vector(xor_x, {4, 2}, device), t = Tensor::from_vector(xor_01, {4, 1}, device);
  int steps = 0;
  double loss = 0.0, accuracy = 0.0;
  for (steps = 1; steps <= 5000; ++steps) {
    opt.zero_grad();
    const Tensor l = bce.forward(mlp.forward(x), t);
    mlp.backward(bce.backward());
    opt.step();
    if (steps % 50 == 0) {
      loss = l.to_vector<float>()[0];
      accuracy = bce.correct().to_vector<float>()[0] / 4.0;
      if (accuracy == 1.0 && loss < 0.05) break;
    }
  }
  mlp.eval();
  const auto out = mlp.forward(x).as(DType::kF32).to_vector<float>();
  std::printf("XOR with a 2-4-1 sigmoid MLP: accuracy %.0f%% after %d steps (loss %.4f); outputs σ(z):", 100.0 * accuracy,
              std::min(steps, 5000), loss);
  for (float z : out) std::printf(" %.3f", 1.0 / (1.0 + std::exp(-z)));
  std::printf("  (targets 0 1 1 0)\n");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics.write({{"event", "final"},
                 {"separable_converged", sep.converged},
                 {"separable_epochs", sep.epochs},
                 {"xor_perceptron_accuracy", xr.accuracy},
                 {"test_accuracy", accuracy},
                 {"test_loss", loss},
                 {"seconds", seconds},
                 {"device", device.str()},
                 {"precision", precision_name(precision)}});
  return sep.converged && !xr.converged && accuracy == 1.0 ? 0 : 2;
} catch (const std::exception& e) {
  return examples::fail("perceptron", e);
}
