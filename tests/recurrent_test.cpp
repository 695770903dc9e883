// Recurrent layers, Embedding, TimeDelay and sequence losses on the CPU: gradient checks
// through time with the state gradients, reference loops for the cell equations, truncated
// BPTT, errors (plain gradient checks of each layer are cases of the op table).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <vector>

#include "gpudl/kernels/activation.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/recurrent.h"
#include "gpudl/layers/time_delay.h"
#include "gradcheck.h"

namespace gpudl {
namespace {

using testing::expect_gradients_match;
using testing::random_vector;

Tensor random_input(const Shape& shape, std::uint64_t salt, float low = -1.0f, float high = 1.0f) {
  return Tensor::from_vector(random_vector(static_cast<std::size_t>(shape.numel()), salt, low, high), shape);
}

// Central differences of L = <r, y> with respect to every element of a state tensor the
// layer reads by reference (set_state), against the analytic gradient backward produced.
void expect_state_gradient_matches(Recurrent& m, const Tensor& x, Tensor state, const Tensor& analytic_grad,
                                   const std::vector<float>& r, const char* what) {
  const std::vector<float> analytic = analytic_grad.to_vector<float>();
  float* p = state.data<float>();
  double worst = 0.0;
  auto objective = [&] {
    const auto out = m.forward(x).to_vector<float>();
    double s = 0.0;
    for (std::size_t k = 0; k < out.size(); ++k) s += static_cast<double>(r[k]) * out[k];
    return s;
  };
  for (std::int64_t i = 0; i < state.numel(); ++i) {
    worst = std::max(worst, testing::grad_error(analytic[static_cast<std::size_t>(i)],
                                                testing::numeric_derivative(p, i, objective)));
  }
  EXPECT_LE(worst, testing::kGradTolerance) << m.describe() << ": " << what;
}

// Gradient check of a recurrent layer with a carried (random) initial state: inputs,
// parameters, and dL/dh0 (and dL/dc0 for the LSTM).
void check_recurrent(Recurrent& m, std::int64_t steps, std::int64_t batch, std::int64_t input, std::uint64_t salt) {
  const std::int64_t slots = m.num_layers() * m.directions();
  Tensor h0 = random_input({slots, batch, m.hidden_size()}, salt + 1);
  Tensor c0 = m.mode() == RecurrentMode::kLstm ? random_input({slots, batch, m.hidden_size()}, salt + 2) : Tensor();
  m.set_state(h0, c0);
  const Tensor x = random_input({steps, batch, input}, salt);
  expect_gradients_match(m, x, salt + 3);
  // The state gradients of the last backward (expect_gradients_match ran one).
  const Tensor y = m.forward(x);
  const auto r = random_vector(static_cast<std::size_t>(y.numel()), salt + 4);
  m.zero_grad();
  m.backward(Tensor::from_vector(r, y.shape()));
  const Tensor gh = m.grad_h0().clone(), gc = c0.defined() ? m.grad_c0().clone() : Tensor();
  expect_state_gradient_matches(m, x, h0, gh, r, "h0");
  if (c0.defined()) expect_state_gradient_matches(m, x, c0, gc, r, "c0");
}

TEST(GradCheck, RnnTanhStackedBidirectional) {
  RNN rnn(3, 4, {.num_layers = 2, .bidirectional = true});
  check_recurrent(rnn, 5, 2, 3, 10);
}

TEST(GradCheck, RnnRelu) {
  Generator gen(7);
  RNN rnn(3, 5, {.generator = &gen}, /*relu=*/true);
  // Central differences are wrong across ReLU's kink, so keep every pre-activation at least
  // ~1 away from it: biases of ±2 by unit (both branches exercised: units 0, 2, 4 on, 1, 3
  // off) and weights in ±0.05, which move a pre-activation by at most ~0.8 here.
  for (Parameter* p : rnn.parameters()) {
    if (p->name.rfind("bias", 0) == 0) {
      std::vector<float> b(5);
      for (std::size_t j = 0; j < b.size(); ++j) b[j] = j % 2 == 0 ? 1.0f : -1.0f;
      p->value.copy_from(Tensor::from_vector(b, {5}));
    } else {
      ops::uniform_(p->value, -0.05f, 0.05f, gen);
    }
  }
  check_recurrent(rnn, 4, 2, 3, 20);
}

TEST(GradCheck, LstmStackedBidirectional) {
  LSTM lstm(3, 4, {.num_layers = 2, .bidirectional = true});
  check_recurrent(lstm, 5, 2, 3, 30);
}

TEST(GradCheck, GruStackedBidirectional) {
  GRU gru(3, 4, {.num_layers = 2, .bidirectional = true});
  check_recurrent(gru, 5, 2, 3, 40);
}

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// PyTorch's LSTM equations for one layer, written out in double from the parameters.
std::vector<double> reference_lstm(LSTM& lstm, const std::vector<float>& x, std::int64_t steps, std::int64_t batch,
                                   std::int64_t in, std::int64_t hidden) {
  const auto wi = lstm.parameter("weight_ih_l0").value.to_vector<float>();
  const auto wh = lstm.parameter("weight_hh_l0").value.to_vector<float>();
  const auto bi = lstm.parameter("bias_ih_l0").value.to_vector<float>();
  const auto bh = lstm.parameter("bias_hh_l0").value.to_vector<float>();
  std::vector<double> h(static_cast<std::size_t>(batch * hidden), 0.0), c = h, out;
  for (std::int64_t t = 0; t < steps; ++t) {
    std::vector<double> nh = h, nc = c;
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t j = 0; j < hidden; ++j) {
        double pre[4];
        for (int g = 0; g < 4; ++g) {
          const std::int64_t row = g * hidden + j;
          double v = bi[static_cast<std::size_t>(row)] + bh[static_cast<std::size_t>(row)];
          for (std::int64_t k = 0; k < in; ++k) {
            v += wi[static_cast<std::size_t>(row * in + k)] * x[static_cast<std::size_t>((t * batch + b) * in + k)];
          }
          for (std::int64_t k = 0; k < hidden; ++k) {
            v += wh[static_cast<std::size_t>(row * hidden + k)] * h[static_cast<std::size_t>(b * hidden + k)];
          }
          pre[g] = v;
        }
        const std::size_t at = static_cast<std::size_t>(b * hidden + j);
        nc[at] = sigmoid(pre[1]) * c[at] + sigmoid(pre[0]) * std::tanh(pre[2]);
        nh[at] = sigmoid(pre[3]) * std::tanh(nc[at]);
      }
    }
    h = nh;
    c = nc;
    out.insert(out.end(), h.begin(), h.end());
  }
  return out;
}

TEST(Recurrent, LstmFollowsPyTorchGateLayout) {
  const std::int64_t steps = 6, batch = 3, in = 4, hidden = 5;
  LSTM lstm(in, hidden);
  const auto x = random_vector(static_cast<std::size_t>(steps * batch * in), 80);
  const auto y = lstm.forward(Tensor::from_vector(x, {steps, batch, in})).to_vector<float>();
  const auto ref = reference_lstm(lstm, x, steps, batch, in, hidden);
  ASSERT_EQ(y.size(), ref.size());
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-5) << "element " << i;
}

TEST(Recurrent, GruFollowsPyTorchEquations) {
  // One step from a given state, by hand: r, z from both projections, n with r inside.
  const std::int64_t in = 2, hidden = 3;
  GRU gru(in, hidden);
  const auto x = random_vector(static_cast<std::size_t>(in), 90);
  const auto h0 = random_vector(static_cast<std::size_t>(hidden), 91);
  gru.set_state(Tensor::from_vector(h0, {1, 1, hidden}));
  const auto y = gru.forward(Tensor::from_vector(x, {1, 1, in})).to_vector<float>();
  const auto wi = gru.parameter("weight_ih_l0").value.to_vector<float>();
  const auto wh = gru.parameter("weight_hh_l0").value.to_vector<float>();
  const auto bi = gru.parameter("bias_ih_l0").value.to_vector<float>();
  const auto bh = gru.parameter("bias_hh_l0").value.to_vector<float>();
  auto proj = [&](const std::vector<float>& w, const std::vector<float>& b, const std::vector<float>& v,
                  std::int64_t row, std::int64_t width) {
    double s = b[static_cast<std::size_t>(row)];
    for (std::int64_t k = 0; k < width; ++k) s += w[static_cast<std::size_t>(row * width + k)] * v[static_cast<std::size_t>(k)];
    return s;
  };
  for (std::int64_t j = 0; j < hidden; ++j) {
    const double r = sigmoid(proj(wi, bi, x, j, in) + proj(wh, bh, h0, j, hidden));
    const double z = sigmoid(proj(wi, bi, x, hidden + j, in) + proj(wh, bh, h0, hidden + j, hidden));
    const double n = std::tanh(proj(wi, bi, x, 2 * hidden + j, in) + r * proj(wh, bh, h0, 2 * hidden + j, hidden));
    EXPECT_NEAR(y[static_cast<std::size_t>(j)], (1 - z) * n + z * h0[static_cast<std::size_t>(j)], 1e-5);
  }
}

TEST(Recurrent, TruncatedBpttWithCarriedStateEqualsOneLongPass) {
  const std::int64_t steps = 12, chunk = 4, batch = 3, in = 2, hidden = 4;
  for (RecurrentMode mode : {RecurrentMode::kRnnTanh, RecurrentMode::kLstm, RecurrentMode::kGru}) {
    Generator gen(5);
    Recurrent m(mode, in, hidden, {.num_layers = 2, .generator = &gen});
    const Tensor x = random_input({steps, batch, in}, 100);
    const auto whole = m.forward(x).to_vector<float>();
    const auto whole_h = m.final_h().to_vector<float>();
    m.reset_state();
    std::vector<float> pieces;
    for (std::int64_t t = 0; t < steps; t += chunk) {
      const auto y = m.forward(x.slice(t, t + chunk)).to_vector<float>();
      pieces.insert(pieces.end(), y.begin(), y.end());
      m.carry_state();
    }
    ASSERT_EQ(pieces.size(), whole.size());
    for (std::size_t i = 0; i < whole.size(); ++i) EXPECT_FLOAT_EQ(pieces[i], whole[i]) << m.describe() << " " << i;
    const auto chunked_h = m.final_h().to_vector<float>();
    for (std::size_t i = 0; i < whole_h.size(); ++i) EXPECT_FLOAT_EQ(chunked_h[i], whole_h[i]);
  }
}

TEST(Recurrent, BidirectionalReverseHalfReadsTheSequenceBackwards) {
  // The reverse direction's output at step t depends only on steps t … T-1: changing the first
  // input step leaves the reverse half of every later step unchanged.
  const std::int64_t steps = 5, batch = 1, in = 2, hidden = 3;
  LSTM lstm(in, hidden, {.bidirectional = true});
  Tensor x = random_input({steps, batch, in}, 110);
  const auto a = lstm.forward(x).to_vector<float>();
  x.data<float>()[0] += 0.5f;
  const auto b = lstm.forward(x).to_vector<float>();
  for (std::int64_t t = 1; t < steps; ++t) {
    for (std::int64_t j = 0; j < hidden; ++j) {
      const std::size_t fwd = static_cast<std::size_t>(t * 2 * hidden + j), rev = fwd + static_cast<std::size_t>(hidden);
      EXPECT_NE(a[fwd], b[fwd]) << "forward half at step " << t;
      EXPECT_EQ(a[rev], b[rev]) << "reverse half at step " << t;
    }
  }
}

// The backend choice is for GPUs: on the CPU every setting runs the fused cells, to the bit.
TEST(Recurrent, BackendChoiceLeavesTheCpuOnTheFusedCells) {
  std::vector<float> outputs[3];
  const RecurrentBackend backends[] = {RecurrentBackend::kAuto, RecurrentBackend::kFused, RecurrentBackend::kCudnn};
  for (int k = 0; k < 3; ++k) {
    Generator gen(41);
    GRU m(5, 7, {.num_layers = 2, .generator = &gen, .backend = backends[k]});
    EXPECT_EQ(m.backend(), backends[k]);
    outputs[k] = m.forward(random_input({6, 3, 5}, 42)).to_vector<float>();
    EXPECT_FALSE(m.last_forward_cudnn());
  }
  EXPECT_EQ(outputs[1], outputs[0]);
  EXPECT_EQ(outputs[2], outputs[0]);
}

TEST(Recurrent, RejectsBadShapesAndState) {
  LSTM lstm(3, 4);
  EXPECT_THROW(lstm.forward(Tensor::zeros({5, 2, 4})), ShapeError);
  EXPECT_THROW(lstm.forward(Tensor::zeros({5, 3})), ShapeError);
  EXPECT_THROW(lstm.set_state(Tensor::zeros({1, 2, 4})), ValueError);  // no c0
  lstm.set_state(Tensor::zeros({1, 7, 4}), Tensor::zeros({1, 7, 4}));
  try {
    lstm.forward(Tensor::zeros({5, 2, 3}));
    FAIL() << "a state for batch 7 was accepted for batch 2";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("[1, 7, 4]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(LSTM(0, 4), ValueError);
  EXPECT_THROW(GRU(3, 4, {.dropout = 1.0f}), ValueError);
  LSTM fresh(3, 4);
  EXPECT_THROW(fresh.carry_state(), Error);
  EXPECT_THROW(fresh.backward(Tensor::zeros({5, 2, 4})), Error);
}

TEST(Embedding, LooksUpRowsAndNamesABadId) {
  Embedding emb(4, 2);
  const auto table = emb.weight().value.to_vector<float>();
  const auto y = emb.forward(Tensor::from_vector(std::vector<std::int32_t>{3, 0}, {2})).to_vector<float>();
  EXPECT_EQ(y, (std::vector<float>{table[6], table[7], table[0], table[1]}));
  try {
    emb.forward(Tensor::from_vector(std::vector<std::int32_t>{1, 4}, {2}));
    FAIL() << "id 4 accepted for a vocabulary of 4";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("id 4"), std::string::npos) << e.what();
  }
  EXPECT_THROW(emb.forward(Tensor::zeros({2})), Error);  // f32 ids
}

TEST(TimeDelay, MatchesTheDelayLineByHand) {
  const std::int64_t taps = 3, dilation = 2, steps = 9;
  TimeDelay td(1, 2, taps, dilation);
  const auto x = random_vector(static_cast<std::size_t>(steps), 120);
  const auto y = td.forward(Tensor::from_vector(x, {1, 1, steps})).to_vector<float>();
  const auto w = td.weight().value.to_vector<float>();
  const auto b = td.bias().value.to_vector<float>();
  const std::int64_t out_steps = steps - dilation * (taps - 1);
  ASSERT_EQ(static_cast<std::int64_t>(y.size()), 2 * out_steps);
  for (std::int64_t o = 0; o < 2; ++o) {
    for (std::int64_t j = 0; j < out_steps; ++j) {
      double v = b[static_cast<std::size_t>(o)];
      for (std::int64_t k = 0; k < taps; ++k) {
        v += w[static_cast<std::size_t>(o * taps + k)] * x[static_cast<std::size_t>(j + k * dilation)];
      }
      EXPECT_NEAR(y[static_cast<std::size_t>(o * out_steps + j)], v, 1e-5);
    }
  }
  EXPECT_THROW(td.forward(Tensor::zeros({1, 1, 4})), ShapeError);  // shorter than the span of 5
}

TEST(SequenceLoss, CrossEntropyOverTimeIsTheMeanOverAllSteps) {
  const std::int64_t steps = 3, batch = 2, classes = 4;
  const Tensor logits = random_input({steps, batch, classes}, 130, -2.0f, 2.0f);
  const Tensor target = Tensor::from_vector(std::vector<std::int64_t>{0, 3, 1, 1, 2, 0}, {steps, batch});
  CrossEntropyLoss seq, flat;
  const float a = seq.forward(logits, target).to_vector<float>()[0];
  const float b = flat.forward(logits.reshape({steps * batch, classes}), target.reshape({steps * batch}))
                      .to_vector<float>()[0];
  EXPECT_FLOAT_EQ(a, b);
  EXPECT_EQ(seq.backward().shape(), logits.shape());
  testing::expect_loss_gradient_matches(seq, logits.clone(), target);
  EXPECT_THROW(seq.forward(logits, Tensor::zeros({steps, 3}, DType::kI64)), ShapeError);
}

TEST(FastExp, WithinAFewUlpOfExpAndSaturatesInsteadOfOverflowing) {
  double worst = 0.0, worst_sigmoid = 0.0;
  float worst_x = 0.0f;
  for (float x = -87.0f; x <= 88.0f; x += 1.0f / 1024.0f + std::abs(x) * 1e-4f) {
    const double want = std::exp(static_cast<double>(x));
    const double err = std::abs(kernels::fast_exp(x) - want) / want;
    if (err > worst) worst = err, worst_x = x;
    if (std::abs(x) < 80.0f) {
      const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(x)));
      worst_sigmoid = std::max(worst_sigmoid, std::abs(kernels::sigmoid(x) - s) / s);
    }
  }
  EXPECT_LE(worst, 4.0 * 0x1p-24) << "at x = " << worst_x;
  EXPECT_LE(worst_sigmoid, 6.0 * 0x1p-24);
  EXPECT_EQ(kernels::fast_exp(0.0f), 1.0f);
  EXPECT_GT(kernels::fast_exp(1000.0f), 1e38f);  // saturates, stays finite
  EXPECT_TRUE(std::isfinite(kernels::fast_exp(1000.0f)));
  EXPECT_LT(kernels::fast_exp(-1000.0f), 2e-38f);
  EXPECT_TRUE(std::isnan(kernels::fast_exp(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_LT(kernels::sigmoid(-std::numeric_limits<float>::infinity()), 1e-37f);
  EXPECT_EQ(kernels::sigmoid(std::numeric_limits<float>::infinity()), 1.0f);
}

TEST(FastTanh, WithinAFewUlpOfTanhEverywhere) {
  // Every float of [-20, 20] in steps that hit both sides of the 0.1 switch, and the edges.
  double worst = 0.0;
  float worst_x = 0.0f;
  for (float x = -20.0f; x <= 20.0f; x += 1.0f / 4096.0f + std::abs(x) * 1e-4f) {
    for (float v : {x, x * 1e-3f, x * 1e-6f}) {
      const double want = std::tanh(static_cast<double>(v));
      const double err = std::abs(kernels::fast_tanh(v) - want) / std::max(std::abs(want), 1e-30);
      if (err > worst) worst = err, worst_x = v;
    }
  }
  EXPECT_LE(worst, 6.0 * 0x1p-24) << "at x = " << worst_x;  // 6 ulp at most
  EXPECT_EQ(kernels::fast_tanh(0.0f), 0.0f);
  EXPECT_TRUE(std::signbit(kernels::fast_tanh(-0.0f)));
  EXPECT_EQ(kernels::fast_tanh(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(kernels::fast_tanh(-std::numeric_limits<float>::infinity()), -1.0f);
  EXPECT_TRUE(std::isnan(kernels::fast_tanh(std::numeric_limits<float>::quiet_NaN())));
}

}  // namespace
}  // namespace gpudl
