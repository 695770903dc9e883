// sequence: one-step prediction of the chaotic Mackey-Glass series with the course's sequence
// models of similar size (a delay-line network, Elman, Jordan, LSTM, GRU), as a table of
// held-out mean squared error and training time.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "example_args.h"
#include "gpudl/gpudl.h"

namespace {

using namespace gpudl;

// Mackey-Glass, dx/dt = β x(t−τ) / (1 + x(t−τ)^10) − γ x(t), β = 0.2, γ = 0.1, τ = 17 (the
// chaotic regime), integrated with 10 Euler steps per unit of time and sampled every unit.
// The first 500 samples (the transient from the constant history) are dropped.
std::vector<float> mackey_glass(std::int64_t n) {
  constexpr int kSub = 10, kTau = 17;
  constexpr double kDt = 1.0 / kSub, kBeta = 0.2, kGamma = 0.1;
  const std::int64_t skip = 500, total = (n + skip) * kSub;
  std::vector<double> x(static_cast<std::size_t>(total + 1), 1.2);
  for (std::int64_t i = kTau * kSub; i < total; ++i) {
    const double lag = x[static_cast<std::size_t>(i - kTau * kSub)];
    x[static_cast<std::size_t>(i + 1)] =
        x[static_cast<std::size_t>(i)] + kDt * (kBeta * lag / (1.0 + std::pow(lag, 10.0)) - kGamma * x[static_cast<std::size_t>(i)]);
  }
  std::vector<float> out;
  for (std::int64_t k = skip; k < skip + n; ++k) out.push_back(static_cast<float>(x[static_cast<std::size_t>(k * kSub)]));
  return out;
}

// A model of the table: trains on windows, then predicts a whole series one step ahead.
struct Entry {
  std::string name;
  std::int64_t params = 0;
  // Loss on one batch of windows (B, W) after one optimizer step.
  std::function<double(const std::vector<float>& windows, std::int64_t batch, std::int64_t width)> step;
  // Predictions p[t] of series[t + 1] for every t (NaN where the model has no prediction yet).
  std::function<std::vector<float>(const std::vector<float>& series)> predict;
};

// Recurrent models: x (T, B, 1) → Recurrent → Linear(hidden, 1), trained on next-value MSE.
Entry recurrent_entry(const std::string& name, std::unique_ptr<Recurrent> rnn, std::int64_t hidden, double lr) {
  auto net = std::make_shared<Sequential>();
  Recurrent* cell = rnn.get();
  net->add(std::unique_ptr<Module>(std::move(rnn)));
  net->add(Linear(hidden, 1));
  auto opt = std::make_shared<Adam>(net->parameters(), AdamOptions{.lr = lr});
  Entry e;
  e.name = name;
  for (Parameter* p : net->parameters()) e.params += p->value.numel();
  e.step = [net, opt, cell](const std::vector<float>& w, std::int64_t batch, std::int64_t width) {
    // Time-major inputs x_0 … x_{W-2} and targets x_1 … x_{W-1}.
    std::vector<float> in(static_cast<std::size_t>((width - 1) * batch)), out(in.size());
    for (std::int64_t t = 0; t + 1 < width; ++t) {
      for (std::int64_t b = 0; b < batch; ++b) {
        in[static_cast<std::size_t>(t * batch + b)] = w[static_cast<std::size_t>(b * width + t)];
        out[static_cast<std::size_t>(t * batch + b)] = w[static_cast<std::size_t>(b * width + t + 1)];
      }
    }
    cell->reset_state();
    net->zero_grad();
    MSELoss loss;
    const Tensor y = net->forward(Tensor::from_vector(in, {width - 1, batch, 1}));
    const double value = loss.forward(y, Tensor::from_vector(out, {width - 1, batch, 1})).to_vector<float>()[0];
    net->backward(loss.backward());
    opt->step();
    return value;
  };
  e.predict = [net, cell](const std::vector<float>& s) {
    cell->reset_state();
    net->eval();
    const auto y = net->forward(Tensor::from_vector(s, {static_cast<std::int64_t>(s.size()), 1, 1})).to_vector<float>();
    net->train();
    return y;
  };
  return e;
}

// The delay line: TimeDelay(1, hidden, taps) → tanh → TimeDelay(hidden, 1, 1), so the
// prediction of x_{t+1} sees x_t … x_{t−taps+1}.
Entry delay_line_entry(std::int64_t taps, std::int64_t hidden, double lr) {
  auto net = std::make_shared<Sequential>(TimeDelay(1, hidden, taps), Tanh(), TimeDelay(hidden, 1, 1));
  auto opt = std::make_shared<Adam>(net->parameters(), AdamOptions{.lr = lr});
  Entry e;
  e.name = "delay line (" + std::to_string(taps) + " taps)";
  for (Parameter* p : net->parameters()) e.params += p->value.numel();
  e.step = [net, opt, taps](const std::vector<float>& w, std::int64_t batch, std::int64_t width) {
    // Output j of a window sees inputs j … j + taps − 1 and predicts input j + taps.
    std::vector<float> in, target;
    for (std::int64_t b = 0; b < batch; ++b) {
      in.insert(in.end(), w.begin() + b * width, w.begin() + b * width + width - 1);
      target.insert(target.end(), w.begin() + b * width + taps, w.begin() + (b + 1) * width);
    }
    net->zero_grad();
    MSELoss loss;
    const Tensor y = net->forward(Tensor::from_vector(in, {batch, 1, width - 1}));
    const double value = loss.forward(y, Tensor::from_vector(target, y.shape())).to_vector<float>()[0];
    net->backward(loss.backward());
    opt->step();
    return value;
  };
  e.predict = [net, taps](const std::vector<float>& s) {
    net->eval();
    const auto y = net->forward(Tensor::from_vector(s, {1, 1, static_cast<std::int64_t>(s.size())})).to_vector<float>();
    net->train();
    std::vector<float> p(static_cast<std::size_t>(taps - 1), std::nanf(""));
    p.insert(p.end(), y.begin(), y.end());
    return p;
  };
  return e;
}

// Jordan network: h_t = tanh(W x_t + U y_{t−1} + b), y_t = v·h_t + c, its own previous output
// fed back as an input. Written out by hand with its backpropagation through time, as the
// course derives it; plain host code (a few hundred parameters), Adam on the packed vector.
class Jordan {
 public:
  Jordan(std::int64_t hidden, double lr, std::uint64_t seed) : h_(hidden), lr_(lr) {
    theta_.resize(static_cast<std::size_t>(4 * h_ + 1));
    Generator gen(seed);
    Tensor t = Tensor::empty({static_cast<std::int64_t>(theta_.size())});
    const float bound = 1.0f / std::sqrt(static_cast<float>(h_));
    ops::uniform_(t, -bound, bound, gen);
    const auto v = t.to_vector<float>();
    theta_.assign(v.begin(), v.end());
    m_.assign(theta_.size(), 0.0);
    s_.assign(theta_.size(), 0.0);
  }
  std::int64_t params() const { return static_cast<std::int64_t>(theta_.size()); }

  // Outputs y_0 … y_{T−1} for inputs x (one sequence); keeps what backward needs when `keep`.
  std::vector<double> run(const float* x, std::int64_t steps, bool keep) {
    std::vector<double> y(static_cast<std::size_t>(steps));
    if (keep) hs_.assign(static_cast<std::size_t>(steps * h_), 0.0);
    double prev = 0.0;
    for (std::int64_t t = 0; t < steps; ++t) {
      double out = c();
      for (std::int64_t j = 0; j < h_; ++j) {
        const double h = std::tanh(w(j) * x[t] + u(j) * prev + b(j));
        if (keep) hs_[static_cast<std::size_t>(t * h_ + j)] = h;
        out += v(j) * h;
      }
      y[static_cast<std::size_t>(t)] = prev = out;
    }
    return y;
  }

  // One Adam step on the mean squared error of a batch of windows; returns the loss.
  double step(const std::vector<float>& windows, std::int64_t batch, std::int64_t width) {
    std::vector<double> grad(theta_.size(), 0.0);
    double loss = 0.0;
    const std::int64_t steps = width - 1;
    const double scale = 1.0 / static_cast<double>(batch * steps);
    for (std::int64_t b = 0; b < batch; ++b) {
      const float* x = windows.data() + b * width;
      const std::vector<double> y = run(x, steps, true);
      double dy_next = 0.0;  // dL/dy_t arriving through y_t's use at step t + 1
      for (std::int64_t t = steps - 1; t >= 0; --t) {
        const double err = y[static_cast<std::size_t>(t)] - x[t + 1];
        loss += err * err * scale;
        const double dy = 2.0 * err * scale + dy_next;
        const double y_prev = t > 0 ? y[static_cast<std::size_t>(t - 1)] : 0.0;
        grad.back() += dy;  // c
        dy_next = 0.0;
        for (std::int64_t j = 0; j < h_; ++j) {
          const double h = hs_[static_cast<std::size_t>(t * h_ + j)];
          const double da = dy * v(j) * (1.0 - h * h);
          grad[static_cast<std::size_t>(3 * h_ + j)] += dy * h;  // v
          grad[static_cast<std::size_t>(j)] += da * x[t];        // w
          grad[static_cast<std::size_t>(h_ + j)] += da * y_prev; // u
          grad[static_cast<std::size_t>(2 * h_ + j)] += da;      // b
          dy_next += da * u(j);
        }
      }
    }
    ++t_;
    const double b1 = 0.9, b2 = 0.999;
    for (std::size_t i = 0; i < theta_.size(); ++i) {
      m_[i] = b1 * m_[i] + (1 - b1) * grad[i];
      s_[i] = b2 * s_[i] + (1 - b2) * grad[i] * grad[i];
      const double mh = m_[i] / (1 - std::pow(b1, t_)), sh = s_[i] / (1 - std::pow(b2, t_));
      theta_[i] -= lr_ * mh / (std::sqrt(sh) + 1e-8);
    }
    return loss;
  }

 private:
  double w(std::int64_t j) const { return theta_[static_cast<std::size_t>(j)]; }
  double u(std::int64_t j) const { return theta_[static_cast<std::size_t>(h_ + j)]; }
  double b(std::int64_t j) const { return theta_[static_cast<std::size_t>(2 * h_ + j)]; }
  double v(std::int64_t j) const { return theta_[static_cast<std::size_t>(3 * h_ + j)]; }
  double c() const { return theta_.back(); }

  std::int64_t h_;
  double lr_;
  int t_ = 0;
  std::vector<double> theta_, m_, s_, hs_;
};

Entry jordan_entry(std::int64_t hidden, double lr, std::uint64_t seed) {
  auto net = std::make_shared<Jordan>(hidden, lr, seed);
  Entry e;
  e.name = "Jordan";
  e.params = net->params();
  e.step = [net](const std::vector<float>& w, std::int64_t batch, std::int64_t width) {
    return net->step(w, batch, width);
  };
  e.predict = [net](const std::vector<float>& s) {
    const auto y = net->run(s.data(), static_cast<std::int64_t>(s.size()), false);
    return std::vector<float>(y.begin(), y.end());
  };
  return e;
}

}  // namespace

int main(int argc, char** argv) try {
  examples::Args args("sequence", "Predicts the Mackey-Glass series one step ahead with five sequence models.");
  args.option("data", "", "unused: the series is generated (accepted for the common flags)")
      .option("device", "cpu", "cpu (the models are a few hundred parameters; a GPU would idle)")
      .option("precision", "fp32", "fp32 (a few hundred parameters: a lower precision would save nothing)")
      .option("epochs", "600", "training steps per model")
      .option("batch", "16", "windows per step")
      .option("window", "64", "window length in samples")
      .option("lr", "0.01", "Adam learning rate")
      .option("seed", "1", "seed for initialisation and window order")
      .option("metrics", "", "JSON-lines metrics file");
  args.parse(argc, argv);
  if (examples::idle_rank("sequence")) return 0;

  // Every flag is read and checked here, before the series is generated. The windows are drawn
  // from the 2000 training samples, so a window cannot be longer than that; the delay line's 7
  // taps need a window of at least 9.
  constexpr std::int64_t train_end = 2000;
  args.choice("device", {"cpu"});
  args.choice("precision", {"fp32"});
  const std::uint64_t seed = args.unsigned_integer("seed");
  const std::int64_t steps = args.integer("epochs", 1), batch = args.integer("batch", 1);
  const std::int64_t width = args.integer("window", 9, train_end);
  const double lr = args.number("lr");
  args.require(lr > 0, "lr", "a learning rate > 0");
  // No resume here: every run starts the file afresh.
  examples::MetricsFile metrics(args.str("metrics"));

  // 3000 samples: the first 2000 train, the last 1000 are held out.
  std::vector<float> series = mackey_glass(3000);
  double mean = 0.0, var = 0.0;
  for (float v : series) mean += v;
  mean /= static_cast<double>(series.size());
  for (float v : series) var += (v - mean) * (v - mean);
  const double sd = std::sqrt(var / static_cast<double>(series.size()));
  for (float& v : series) v = static_cast<float>((v - mean) / sd);

  manual_seed(seed);
  std::vector<Entry> entries;
  entries.push_back(delay_line_entry(7, 40, lr));
  entries.push_back(recurrent_entry("Elman RNN", std::make_unique<RNN>(1, 18), 18, lr));
  entries.push_back(jordan_entry(100, lr, seed));
  entries.push_back(recurrent_entry("LSTM", std::make_unique<LSTM>(1, 9), 9, lr));
  entries.push_back(recurrent_entry("GRU", std::make_unique<GRU>(1, 10), 10, lr));

  std::printf("Mackey-Glass (tau 17), 3000 samples normalised to zero mean and unit variance; train on the first\n"
              "2000 (%lld steps of %lld windows of %lld), held-out MSE of one-step predictions on the last 1000\n"
              "(variance 1 would be no skill; predicting x_t for x_{t+1} scores %.4f)\n\n",
              static_cast<long long>(steps), static_cast<long long>(batch), static_cast<long long>(width), [&] {
                double s = 0.0;
                for (std::int64_t t = train_end; t + 1 < 3000; ++t) {
                  const double d = series[static_cast<std::size_t>(t + 1)] - series[static_cast<std::size_t>(t)];
                  s += d * d;
                }
                return s / static_cast<double>(3000 - train_end - 1);
              }());
  std::printf("%-22s %10s %16s %16s %10s\n", "model", "parameters", "train MSE", "held-out MSE", "seconds");
  double total_s = 0.0, last_mse = 0.0;
  for (Entry& e : entries) {
    Generator order(seed);
    Tensor u = Tensor::empty({batch});
    const auto start = std::chrono::steady_clock::now();
    double train_loss = 0.0;
    for (std::int64_t s = 0; s < steps; ++s) {
      ops::uniform_(u, 0.0f, 1.0f, order);
      const auto draws = u.to_vector<float>();
      std::vector<float> windows;
      for (float d : draws) {
        const auto at = static_cast<std::int64_t>(d * static_cast<float>(train_end - width));
        windows.insert(windows.end(), series.begin() + at, series.begin() + at + width);
      }
      const double value = e.step(windows, batch, width);
      if (!std::isfinite(value)) throw Error(e.name + ": training diverged at step " + std::to_string(s));
      train_loss = s + 20 >= steps ? train_loss + value / 20.0 : 0.0;  // mean of the last 20 steps
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // One pass over the whole series, so the state entering the held-out part is the one the
    // training part leaves; score the predictions of samples 2001 … 2999.
    const std::vector<float> p = e.predict(series);
    double mse = 0.0;
    for (std::int64_t t = train_end; t + 1 < 3000; ++t) {
      const double d = p[static_cast<std::size_t>(t)] - series[static_cast<std::size_t>(t + 1)];
      mse += d * d;
    }
    mse /= static_cast<double>(3000 - train_end - 1);
    std::printf("%-22s %10lld %16.6f %16.6f %10.2f\n", e.name.c_str(), static_cast<long long>(e.params), train_loss,
                mse, seconds);
    metrics.write({{"event", "model"},
                   {"model", e.name},
                   {"parameters", e.params},
                   {"held_out_mse", mse},
                   {"seconds", seconds}});
    total_s += seconds;
    last_mse = mse;
  }
  metrics.write({{"event", "final"}, {"test_loss", last_mse}, {"seconds", total_s}, {"device", "cpu"}});
  return 0;
} catch (const std::exception& e) {
  return examples::fail("sequence", e);
}
