// linear_regression: fits y = X w + b + noise by full-batch gradient descent with the
// tensor operations (GEMM, element-wise, reductions), on the GPU when there is one.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include "gpudl/gpudl.h"

namespace {

struct Options {
  std::string device = "auto";
  std::int64_t samples = 32768;
  std::int64_t features = 256;
  int steps = 200;
  float lr = 0.5f;
  std::uint64_t seed = 1;
  std::string metrics;
};

void usage(const char* argv0) {
  std::printf(
      "usage: %s [options]\n"
      "Fits a linear model to synthetic data by gradient descent and reports how close it gets.\n"
      "  --device auto|cpu|cuda   where to run (default auto: the GPU when usable)\n"
      "  --samples N              rows of X (default 32768)\n"
      "  --features N             columns of X (default 256)\n"
      "  --steps N                gradient-descent steps (default 200)\n"
      "  --lr X                   learning rate (default 0.5)\n"
      "  --seed N                 seed for data and initialisation (default 1)\n"
      "  --metrics FILE           write one JSON object per logged step, then a final one\n"
      "  --help                   this text\n",
      argv0);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + arg);
      return argv[++i];
    };
    auto number = [&](const std::string& text) {
      std::size_t used = 0;
      const double v = std::stod(text, &used);
      if (used != text.size() || !std::isfinite(v)) throw std::invalid_argument("bad number for " + arg + ": " + text);
      return v;
    };
    if (arg == "--help" || arg == "-h") {
      usage(argv[0]);
      std::exit(0);
    } else if (arg == "--device") {
      o.device = value();
    } else if (arg == "--samples") {
      o.samples = static_cast<std::int64_t>(number(value()));
    } else if (arg == "--features") {
      o.features = static_cast<std::int64_t>(number(value()));
    } else if (arg == "--steps") {
      o.steps = static_cast<int>(number(value()));
    } else if (arg == "--lr") {
      o.lr = static_cast<float>(number(value()));
    } else if (arg == "--seed") {
      o.seed = static_cast<std::uint64_t>(number(value()));
    } else if (arg == "--metrics") {
      o.metrics = value();
    } else {
      throw std::invalid_argument("unknown option " + arg + " (see --help)");
    }
  }
  if (o.samples < 1 || o.features < 1 || o.steps < 0 || !(o.lr > 0.0f)) {
    throw std::invalid_argument("--samples and --features must be >= 1, --steps >= 0, --lr > 0");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  using namespace gpudl;
  const Options o = parse(argc, argv);
  const Device device = Device::parse(o.device);
  std::printf("linear_regression on %s (%s): %lld samples x %lld features, %d steps\n", device.str().c_str(),
              device.name().c_str(), static_cast<long long>(o.samples), static_cast<long long>(o.features), o.steps);
  std::ofstream metrics;
  if (!o.metrics.empty()) {
    metrics.open(o.metrics);
    if (!metrics) throw IoError("cannot write metrics file " + o.metrics);
  }

  // Data: X ~ U(-1, 1) standardised by construction, true weights ~ N(0, 1), small noise.
  Generator gen(o.seed);
  const std::int64_t n = o.samples, d = o.features;
  Tensor x = Tensor::empty({n, d}, DType::kF32, device);
  Tensor w_true = Tensor::empty({d, 1}, DType::kF32, device);
  Tensor noise = Tensor::empty({n, 1}, DType::kF32, device);
  ops::uniform_(x, -1.0f, 1.0f, gen);
  ops::normal_(w_true, 0.0f, 1.0f, gen);
  ops::normal_(noise, 0.0f, 0.01f, gen);
  Tensor y = ops::matmul(x, w_true);
  ops::add(y, y, noise);

  Tensor w = Tensor::zeros({d, 1}, DType::kF32, device);
  Tensor pred = Tensor::empty({n, 1}, DType::kF32, device);
  Tensor resid = Tensor::empty({n, 1}, DType::kF32, device);
  Tensor grad = Tensor::empty({d, 1}, DType::kF32, device);
  // U(-1, 1) features have variance 1/3, so the loss curvature is 2/3: scale the step to it.
  const float step = o.lr * 3.0f / static_cast<float>(n);

  auto loss_of = [&] {
    Tensor sq = ops::mul(resid, resid);
    return static_cast<double>(ops::mean(sq.reshape({-1}), 0).to_vector<float>()[0]);
  };
  const auto start = std::chrono::steady_clock::now();
  double loss = 0.0;
  for (int s = 0; s <= o.steps; ++s) {
    ops::matmul(pred, x, w);                                   // (n, 1) = (n, d)(d, 1)
    ops::sub(resid, pred, y);
    if (s % 50 == 0 || s == o.steps) {
      loss = loss_of();  // reads back to the host: only every 50 steps
      std::printf("step %4d  mse %.6g\n", s, loss);
      if (metrics) metrics << "{\"step\": " << s << ", \"loss\": " << loss << "}\n";
      if (!std::isfinite(loss)) throw Error("loss diverged at step " + std::to_string(s) + "; lower --lr");
    }
    if (s == o.steps) break;
    ops::matmul(grad, x, resid, {.transpose_a = true});         // (d, 1) = X^T r
    ops::axpy(w, -step, grad);
  }
  Tensor diff = ops::sub(w, w_true);
  const double werr = std::sqrt(ops::sum(ops::mul(diff, diff).reshape({-1}), 0).to_vector<float>()[0]);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("final mse %.6g (noise floor 1e-4), |w - w_true| = %.4g, %.2f s, %.1f steps/s\n", loss, werr, seconds,
              o.steps / seconds);
  if (metrics) {
    metrics << "{\"event\": \"final\", \"test_loss\": " << loss << ", \"weight_error\": " << werr
            << ", \"seconds\": " << seconds << ", \"device\": \"" << device.str() << "\"}\n";
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "linear_regression: error: %s\n", e.what());
  return 1;
}
