// optimizers_demo: the course's comparison of gradient-descent variants on y = w·x + b (log J
// per iteration to CSV, iterations to a target J), the same with badly scaled inputs, and the
// escape from the saddle of f = x² − y² + y⁴/4.
#include <chrono>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>

#include "example_args.h"
#include "example_train.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/gpudl.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"

namespace {

using namespace gpudl;

struct Method {
  std::string name;
  std::function<std::unique_ptr<Optimizer>(std::vector<Parameter*>)> make;
};

// Learning rates a practitioner would pick for unit-scale inputs; the badly scaled run keeps
// them, which is the point of that run.
std::vector<Method> methods() {
  return {
      {"sgd", [](auto p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1}); }},
      {"momentum", [](auto p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.05, .momentum = 0.9}); }},
      {"nesterov",
       [](auto p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.05, .momentum = 0.9, .nesterov = true}); }},
      {"adagrad", [](auto p) { return std::make_unique<Adagrad>(p, AdagradOptions{.lr = 0.5}); }},
      {"rmsprop", [](auto p) { return std::make_unique<RMSprop>(p, RMSpropOptions{.lr = 0.02}); }},
      {"adadelta", [](auto p) { return std::make_unique<Adadelta>(p, AdadeltaOptions{.lr = 1.0}); }},
      {"adam", [](auto p) { return std::make_unique<Adam>(p, AdamOptions{.lr = 0.1}); }},
      {"adamw", [](auto p) { return std::make_unique<AdamW>(p, AdamWOptions{.lr = 0.1, .weight_decay = 0.01}); }},
  };
}

struct Curve {
  std::vector<double> values;  // per iteration
  int reached = -1;            // first iteration at or below the target, -1 if never
  bool diverged = false;
};

void write_csv(const std::string& path, const std::vector<Method>& ms, const std::vector<Curve>& curves,
               const char* what) {
  std::ofstream out(path);
  if (!out) throw IoError("cannot write " + path);
  out << "iteration";
  for (const auto& m : ms) out << "," << m.name;
  out << "\n";
  // As many rows as the longest curve: one that diverged early stops, the others go on (NaN
  // where a curve has ended).
  std::size_t rows = 0;
  for (const auto& c : curves) rows = std::max(rows, c.values.size());
  for (std::size_t i = 0; i < rows; ++i) {
    out << i;
    for (const auto& c : curves) out << "," << (i < c.values.size() ? c.values[i] : NAN);
    out << "\n";
  }
  std::printf("  (%s per iteration written to %s)\n", what, path.c_str());
}

void print_table(const std::vector<Method>& ms, const std::vector<Curve>& curves, const char* reach, const char* last) {
  std::printf("  %-10s %22s %14s\n", "method", reach, last);
  for (std::size_t i = 0; i < ms.size(); ++i) {
    const Curve& c = curves[i];
    char when[32];
    if (c.diverged) {
      std::snprintf(when, sizeof when, "diverged");
    } else if (c.reached < 0) {
      std::snprintf(when, sizeof when, "not reached");
    } else {
      std::snprintf(when, sizeof when, "%d", c.reached);
    }
    std::printf("  %-10s %22s %14.6g\n", ms[i].name.c_str(), when, c.diverged ? NAN : c.values.back());
  }
}

// Fits y = w x + b by full-batch gradient descent with each method from w = b = 0.
std::vector<Curve> regression(const Tensor& x, const Tensor& y, int iterations, double target, Device device,
                              Precision precision) {
  std::vector<Curve> curves;
  for (const Method& m : methods()) {
    Linear model(1, 1);
    model.to(device);
    model.set_precision(precision);
    ops::fill(model.weight().value, 0.0);
    ops::fill(model.bias().value, 0.0);
    auto opt = m.make(model.parameters());
    MSELoss mse;
    Curve c;
    for (int it = 0; it < iterations; ++it) {
      opt->zero_grad();
      const double j = mse.forward(model.forward(x), y).to_vector<float>()[0];
      c.values.push_back(std::log(j));
      if (!std::isfinite(j) || j > 1e12) {
        c.diverged = true;
        break;
      }
      if (c.reached < 0 && j <= target) c.reached = it;
      model.backward(mse.backward());
      opt->step();
    }
    curves.push_back(std::move(c));
  }
  return curves;
}

}  // namespace

int main(int argc, char** argv) try {
  examples::Args args("optimizers_demo",
                      "Compares SGD, momentum, Nesterov, Adagrad, RMSprop, Adadelta, Adam and AdamW on linear\n"
                      "regression (unit-scale and badly scaled inputs) and on a saddle point.");
  args.option("data", "", "unused: the data are generated")
      .option("device", "auto", "auto, cpu, cuda or cuda:N")
      .option("precision", "auto", examples::kPrecisionHelp)
      .option("epochs", "300", "iterations of each optimizer in each experiment")
      .option("batch", "200", "samples of (x, y) (full-batch descent)")
      .option("seed", "7", "seed for the data")
      .option("out", "optimizers_demo", "prefix of the CSV files written")
      .option("metrics", "", "JSON-lines metrics file");
  args.parse(argc, argv);
  if (examples::idle_rank("optimizers_demo")) return 0;

  // Every flag is read and checked here, before anything is generated or trained.
  const int iterations = static_cast<int>(args.integer("epochs", 1, std::numeric_limits<int>::max()));
  const std::int64_t n = args.integer("batch", 2);
  const std::uint64_t seed = args.unsigned_integer("seed");
  args.require(!args.str("out").empty(), "out", "a file name prefix");
  examples::check_writable_path("out", args.str("out") + "_normalised.csv");
  // Last, since "auto" may print a note about the GPU it looked for.
  const Device device = Device::parse(args.str("device"));
  const Precision precision = examples::precision_without_scaling(args, device);
  // No resume here: every run starts the file afresh.
  examples::MetricsFile metrics(args.str("metrics"));
  const auto start = std::chrono::steady_clock::now();
  const std::vector<Method> ms = methods();

  // y = 3x + 2 + N(0, 0.1²): the best J is the noise variance, 0.01.
  Generator gen(seed);
  Tensor x = Tensor::empty({n, 1}), noise = Tensor::empty({n, 1});
  ops::normal_(x, 0.0f, 1.0f, gen);
  ops::normal_(noise, 0.0f, 0.1f, gen);
  auto targets = [&](const Tensor& inputs) {
    Tensor y = Tensor::full({n, 1}, 2.0);
    ops::axpy(y, 3.0f, inputs);
    ops::add(y, y, noise);
    return y;
  };
  const double target_j = 0.02;
  std::printf("1. y = 3x + 2 + noise, x ~ N(0, 1) (normalised); target J <= %g (noise floor 0.01)\n", target_j);
  const std::vector<Curve> unit =
      regression(x.to(device), targets(x).to(device), iterations, target_j, device, precision);
  print_table(ms, unit, "iterations to target", "final log J");
  write_csv(args.str("out") + "_normalised.csv", ms, unit, "log J");

  // The same relation on inputs x' = 10 x + 20: curvature grows ~500-fold along w and the
  // problem becomes ill-conditioned (w and b are strongly coupled).
  Tensor scaled = Tensor::full({n, 1}, 20.0);
  ops::axpy(scaled, 10.0f, x);
  std::printf("\n2. the same with badly scaled inputs x' = 10x + 20 (same learning rates)\n");
  const std::vector<Curve> bad =
      regression(scaled.to(device), targets(scaled).to(device), iterations, target_j, device, precision);
  print_table(ms, bad, "iterations to target", "final log J");
  write_csv(args.str("out") + "_badly_scaled.csv", ms, bad, "log J");

  // 3. f(x, y) = x² − y² + y⁴/4 has a saddle at (0, 0) and minima at (0, ±√2), f = −1.
  //    Starting at (1, 1e-4), the gradient along y is tiny: who gets away from the saddle?
  std::printf("\n3. saddle f = x^2 - y^2 + y^4/4 from (1, 1e-4): iterations until |y| > 1 (escaped)\n");
  std::vector<Curve> saddle;
  for (const Method& m : ms) {
    Parameter p{"xy", Tensor::from_vector(std::vector<float>{1.0f, 1e-4f}, {2}, device), Tensor::zeros({2}, DType::kF32, device)};
    auto opt = m.make({&p});
    Curve c;
    for (int it = 0; it < iterations; ++it) {
      const auto v = p.value.to_vector<float>();
      const double px = v[0], py = v[1];
      c.values.push_back(px * px - py * py + py * py * py * py / 4.0);
      if (c.reached < 0 && std::abs(py) > 1.0) c.reached = it;
      p.grad.copy_from(Tensor::from_vector(
          std::vector<float>{static_cast<float>(2 * px), static_cast<float>(-2 * py + py * py * py)}, {2}));
      opt->step();
    }
    saddle.push_back(std::move(c));
  }
  print_table(ms, saddle, "iterations to escape", "final f");
  write_csv(args.str("out") + "_saddle.csv", ms, saddle, "f");

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  json::Object final{
      {"event", "final"}, {"seconds", seconds}, {"device", device.str()}, {"precision", precision_name(precision)}};
  for (std::size_t i = 0; i < ms.size(); ++i) {
    final.emplace_back(ms[i].name + "_iterations_to_target", unit[i].reached);
    final.emplace_back(ms[i].name + "_escaped_saddle_at", saddle[i].reached);
  }
  // The loss this example reports is the best final J over the methods on normalised inputs.
  double best = INFINITY;
  for (const Curve& c : unit) {
    if (!c.diverged) best = std::min(best, std::exp(c.values.back()));
  }
  final.emplace_back("test_loss", best);
  metrics.write(final);
  return 0;
} catch (const std::exception& e) {
  return examples::fail("optimizers_demo", e);
}
