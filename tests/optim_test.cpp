// Optimizers on the CPU against updates worked out by hand, their checkpoint state, option
// checks, gradient-norm clipping and make_optimizer.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "gpudl/core/runtime/module.h"
#include "gpudl/core/training/optim.h"
#include "test_util.h"

namespace gpudl {
namespace {

// The hand values are exact decimals (or quoted to 8 digits); the optimizer computes them in
// float32 through a dozen roundings on values of order 1 (ulp 1.2e-7 at 1, 2.4e-7 at 2) and
// with eps terms the hand arithmetic leaves out (at most 1e-8 / 0.1 = 1e-7 relative here).
constexpr double kHandTolerance = 2e-6;

Parameter make_param(const std::string& name, const std::vector<float>& value, const std::vector<float>& grad) {
  const auto n = static_cast<std::int64_t>(value.size());
  return Parameter{name, Tensor::from_vector(value, {n}), Tensor::from_vector(grad, {n})};
}

void set_grad(Parameter& p, const std::vector<float>& grad) {
  p.grad.copy_from(Tensor::from_vector(grad, p.grad.shape()));
}

void expect_values(const Tensor& t, std::initializer_list<double> expected, const std::string& what) {
  const std::vector<float> got = t.to(Device::cpu()).to_vector<float>();
  ASSERT_EQ(got.size(), expected.size()) << what;
  std::size_t i = 0;
  for (double e : expected) {
    EXPECT_NEAR(got[i], e, kHandTolerance) << what << " element " << i;
    ++i;
  }
}

// The tensor named `name` in an optimizer's state.
Tensor state_entry(const Optimizer& opt, const std::string& name) {
  for (const auto& [n, t] : opt.state()) {
    if (n == name) return t;
  }
  ADD_FAILURE() << "no state entry '" << name << "'";
  return {};
}

// Runs f, expecting an exception of type E whose message holds every one of `parts`.
template <class E>
void expect_throw_naming(const std::function<void()>& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const E& e) {
    const std::string what = e.what();
    for (const std::string& part : parts) EXPECT_NE(what.find(part), std::string::npos) << what << " lacks " << part;
    return;
  }
  ADD_FAILURE() << "no exception of the expected type";
}

// ---------------------------------------------------------------------------------------------
// SGD

TEST(OptimSGD, PlainStepIsLrTimesGradient) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {0.5f, 1.0f});
  SGD opt({&w}, {.lr = 0.1});
  opt.step();
  // 1 - 0.1 * 0.5 = 0.95;  -2 - 0.1 * 1 = -2.1
  expect_values(w.value, {0.95, -2.1}, "step 1");
  set_grad(w, {0.25f, -1.0f});
  opt.step();
  // 0.95 - 0.1 * 0.25 = 0.925;  -2.1 - 0.1 * -1 = -2.0
  expect_values(w.value, {0.925, -2.0}, "step 2");
  EXPECT_EQ(opt.steps(), 2);
  EXPECT_EQ(opt.state().size(), 1u) << "without momentum only the step count is state";
}

TEST(OptimSGD, MomentumBufferStartsAsTheFirstGradient) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {0.5f, 1.0f});
  SGD opt({&w}, {.lr = 0.1, .momentum = 0.9});
  opt.step();
  // buf = g = [0.5, 1];  p = [1 - 0.05, -2 - 0.1]
  expect_values(state_entry(opt, "w.momentum_buffer"), {0.5, 1.0}, "buf 1");
  expect_values(w.value, {0.95, -2.1}, "step 1");
  set_grad(w, {0.25f, -1.0f});
  opt.step();
  // buf = 0.9 * [0.5, 1] + [0.25, -1] = [0.7, -0.1];  p = [0.95 - 0.07, -2.1 + 0.01]
  expect_values(state_entry(opt, "w.momentum_buffer"), {0.7, -0.1}, "buf 2");
  expect_values(w.value, {0.88, -2.09}, "step 2");
  set_grad(w, {0.0f, 0.0f});
  opt.step();
  // buf = 0.9 * [0.7, -0.1] = [0.63, -0.09];  p = [0.88 - 0.063, -2.09 + 0.009]
  expect_values(state_entry(opt, "w.momentum_buffer"), {0.63, -0.09}, "buf 3");
  expect_values(w.value, {0.817, -2.081}, "step 3");
}

TEST(OptimSGD, DampeningScalesGradientsAfterTheFirst) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {0.5f, 1.0f});
  SGD opt({&w}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
  opt.step();
  // The first step ignores dampening: buf = g = [0.5, 1], p = [0.95, -2.1]
  expect_values(w.value, {0.95, -2.1}, "step 1");
  set_grad(w, {0.25f, -1.0f});
  opt.step();
  // buf = 0.9 * [0.5, 1] + 0.5 * [0.25, -1] = [0.575, 0.4];  p = [0.95 - 0.0575, -2.1 - 0.04]
  expect_values(state_entry(opt, "w.momentum_buffer"), {0.575, 0.4}, "buf 2");
  expect_values(w.value, {0.8925, -2.14}, "step 2");
}

TEST(OptimSGD, NesterovLooksAheadAlongTheBuffer) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {0.5f, 1.0f});
  SGD opt({&w}, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
  opt.step();
  // buf = [0.5, 1];  g' = g + 0.9 * buf = [0.95, 1.9];  p = [1 - 0.095, -2 - 0.19]
  expect_values(w.value, {0.905, -2.19}, "step 1");
  set_grad(w, {0.25f, -1.0f});
  opt.step();
  // buf = [0.45 + 0.25, 0.9 - 1] = [0.7, -0.1];  g' = [0.25 + 0.63, -1 - 0.09] = [0.88, -1.09]
  // p = [0.905 - 0.088, -2.19 + 0.109]
  expect_values(w.value, {0.817, -2.081}, "step 2");
}

TEST(OptimSGD, WeightDecayAddsToTheGradient) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {0.5f, 1.0f});
  SGD opt({&w}, {.lr = 0.1, .weight_decay = 0.1});
  opt.step();
  // g' = [0.5 + 0.1, 1 - 0.2] = [0.6, 0.8];  p = [1 - 0.06, -2 - 0.08]
  expect_values(w.value, {0.94, -2.08}, "step 1");
  opt.step();
  // g' = [0.5 + 0.094, 1 - 0.208] = [0.594, 0.792];  p = [0.94 - 0.0594, -2.08 - 0.0792]
  expect_values(w.value, {0.8806, -2.1592}, "step 2");
}

TEST(OptimSGD, SetLrTakesEffectAtTheNextStep) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {0.5f, 1.0f});
  SGD opt({&w}, {.lr = 0.1});
  opt.set_lr(0.2);
  EXPECT_EQ(opt.lr(), 0.2);
  opt.step();
  // 1 - 0.2 * 0.5 = 0.9;  -2 - 0.2 * 1 = -2.2
  expect_values(w.value, {0.9, -2.2}, "step 1");
  const auto hp = opt.hyperparameters();
  ASSERT_FALSE(hp.empty());
  EXPECT_EQ(hp[0].first, "lr");
  EXPECT_EQ(hp[0].second, 0.2);
}

TEST(OptimSGD, ZeroGradClearsEveryGradient) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {0.5f, 1.0f});
  Parameter b = make_param("b", {3.0f}, {7.0f});
  SGD opt({&w, &b});
  opt.zero_grad();
  expect_values(w.grad, {0.0, 0.0}, "w.grad");
  expect_values(b.grad, {0.0}, "b.grad");
}

// ---------------------------------------------------------------------------------------------
// Adagrad, RMSprop, Adadelta

TEST(OptimAdagrad, DividesBySquareRootOfSummedSquares) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {3.0f, 4.0f});
  Adagrad opt({&w}, {.lr = 0.1});
  opt.step();
  // sum = [9, 16];  p = [1 - 0.1 * 3 / 3, -2 - 0.1 * 4 / 4]
  expect_values(state_entry(opt, "w.sum"), {9.0, 16.0}, "sum 1");
  expect_values(w.value, {0.9, -2.1}, "step 1");
  set_grad(w, {4.0f, 3.0f});
  opt.step();
  // sum = [9 + 16, 16 + 9] = [25, 25];  p = [0.9 - 0.1 * 4 / 5, -2.1 - 0.1 * 3 / 5]
  expect_values(state_entry(opt, "w.sum"), {25.0, 25.0}, "sum 2");
  expect_values(w.value, {0.82, -2.16}, "step 2");
}

TEST(OptimAdagrad, WeightDecayAddsToTheGradient) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {2.5f, 5.0f});
  Adagrad opt({&w}, {.lr = 0.1, .weight_decay = 0.5});
  opt.step();
  // g' = [2.5 + 0.5, 5 - 1] = [3, 4];  sum = [9, 16];  p = [1 - 0.1, -2 - 0.1]
  expect_values(state_entry(opt, "w.sum"), {9.0, 16.0}, "sum");
  expect_values(w.value, {0.9, -2.1}, "step 1");
}

TEST(OptimRMSprop, DividesByRootMeanSquare) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {2.0f, 4.0f});
  RMSprop opt({&w}, {.lr = 0.1, .alpha = 0.75});
  opt.step();
  // sq = 0.25 * [4, 16] = [1, 4];  g / sqrt(sq) = [2, 2];  p = [1 - 0.2, -2 - 0.2]
  expect_values(state_entry(opt, "w.square_avg"), {1.0, 4.0}, "square_avg 1");
  expect_values(w.value, {0.8, -2.2}, "step 1");
  set_grad(w, {1.0f, -2.0f});
  opt.step();
  // sq = 0.75 * [1, 4] + 0.25 * [1, 4] = [1, 4];  g / sqrt(sq) = [1, -1];  p = [0.8 - 0.1, -2.2 + 0.1]
  expect_values(state_entry(opt, "w.square_avg"), {1.0, 4.0}, "square_avg 2");
  expect_values(w.value, {0.7, -2.1}, "step 2");
}

TEST(OptimRMSprop, MomentumAccumulatesScaledGradients) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {2.0f, 4.0f});
  RMSprop opt({&w}, {.lr = 0.1, .alpha = 0.75, .momentum = 0.5});
  opt.step();
  // buf starts at zero (unlike SGD's): buf = 0.5 * 0 + [2, 2];  p = [1 - 0.2, -2 - 0.2]
  expect_values(state_entry(opt, "w.momentum_buffer"), {2.0, 2.0}, "buf 1");
  expect_values(w.value, {0.8, -2.2}, "step 1");
  set_grad(w, {1.0f, -2.0f});
  opt.step();
  // g / sqrt(sq) = [1, -1];  buf = 0.5 * [2, 2] + [1, -1] = [2, 0];  p = [0.8 - 0.2, -2.2 - 0]
  expect_values(state_entry(opt, "w.momentum_buffer"), {2.0, 0.0}, "buf 2");
  expect_values(w.value, {0.6, -2.2}, "step 2");
}

TEST(OptimRMSprop, WeightDecayAddsToTheGradient) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {1.5f, 5.0f});
  RMSprop opt({&w}, {.lr = 0.1, .alpha = 0.75, .weight_decay = 0.5});
  opt.step();
  // g' = [1.5 + 0.5, 5 - 1] = [2, 4], then as DividesByRootMeanSquare: p = [0.8, -2.2]
  expect_values(w.value, {0.8, -2.2}, "step 1");
}

TEST(OptimAdadelta, ScalesByTheRatioOfRunningRoots) {
  // eps = 1 and rho = 0.5 keep the first step's roots whole numbers.
  Parameter w = make_param("w", {1.0f, -2.0f}, {4.0f, -24.0f});
  Adadelta opt({&w}, {.lr = 1.0, .rho = 0.5, .eps = 1.0});
  opt.step();
  // sq = 0.5 * [16, 576] = [8, 288];  delta = sqrt(0 + 1) / sqrt(sq + 1) * g = [4 / 3, -24 / 17]
  // acc = 0.5 * delta^2 = [8 / 9, 288 / 289];  p = [1 - 4 / 3, -2 + 24 / 17] = [-1 / 3, -10 / 17]
  expect_values(state_entry(opt, "w.square_avg"), {8.0, 288.0}, "square_avg 1");
  expect_values(state_entry(opt, "w.acc_delta"), {0.88888889, 0.99653979}, "acc_delta 1");
  expect_values(w.value, {-0.33333333, -0.58823529}, "step 1");
  set_grad(w, {2.0f, 12.0f});
  opt.step();
  // sq = 0.5 * [8, 288] + 0.5 * [4, 144] = [6, 216]
  // delta0 = sqrt(8/9 + 1) / sqrt(6 + 1) * 2 = 2 sqrt(17 / 63) = 1.03892496
  // delta1 = sqrt(288/289 + 1) / sqrt(216 + 1) * 12 = 12 sqrt(577) / (17 sqrt(217)) = 1.15103986
  // p = [-1/3 - 1.03892496, -10/17 - 1.15103986];  acc0 = 4/9 + 34/63 = 62/63 = 0.98412698
  expect_values(state_entry(opt, "w.square_avg"), {6.0, 216.0}, "square_avg 2");
  expect_values(state_entry(opt, "w.acc_delta"), {0.98412698, 1.16071628}, "acc_delta 2");
  expect_values(w.value, {-1.37225830, -1.73927516}, "step 2");
}

// ---------------------------------------------------------------------------------------------
// Adam and AdamW

TEST(OptimAdam, FirstStepMovesEachWeightByLr) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {0.5f, -2.0f});
  Adam opt({&w}, {.lr = 0.1});
  opt.step();
  // m = 0.1 g = [0.05, -0.2];  v = 0.001 g^2 = [0.00025, 0.004];  bias corrections 0.1 and 0.001
  // m_hat = g, sqrt(v_hat) = |g|, so each weight moves by lr against its gradient's sign
  expect_values(state_entry(opt, "w.exp_avg"), {0.05, -0.2}, "exp_avg 1");
  expect_values(state_entry(opt, "w.exp_avg_sq"), {0.00025, 0.004}, "exp_avg_sq 1");
  expect_values(w.value, {0.9, -1.9}, "step 1");
  set_grad(w, {0.5f, 1.0f});
  opt.step();
  // m = 0.9 * [0.05, -0.2] + 0.1 * [0.5, 1] = [0.095, -0.08]
  // v = 0.999 * [0.00025, 0.004] + 0.001 * [0.25, 1] = [0.00049975, 0.004996]
  // bias corrections 1 - 0.81 = 0.19 and 1 - 0.998001 = 0.001999
  // element 0: m_hat = 0.5, v_hat = 0.25, p = 0.9 - 0.1 * 0.5 / 0.5 = 0.8
  // element 1: m_hat = -0.42105263, v_hat = 2.49924962, p = -1.9 + 0.1 * 0.42105263 / 1.58090152
  expect_values(state_entry(opt, "w.exp_avg"), {0.095, -0.08}, "exp_avg 2");
  expect_values(w.value, {0.8, -1.87336630}, "step 2");
}

TEST(OptimAdam, WeightDecayAddsToTheGradient) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {-0.1f, 0.1f});
  Adam opt({&w}, {.lr = 0.1, .weight_decay = 0.1});
  opt.step();
  // g' = [-0.1 + 0.1, 0.1 - 0.2] = [0, -0.1]: weight 0 stays (m = 0), weight 1 moves by lr
  // toward zero although its raw gradient points away
  expect_values(w.value, {1.0, -1.9}, "step 1");
  set_grad(w, {0.5f, 1.0f});
  opt.step();
  // g' = [0.5 + 0.1, 1 - 0.19] = [0.6, 0.81]
  // m = [0.06, 0.9 * -0.01 + 0.081] = [0.06, 0.072];  v = [0.00036, 0.999e-5 + 0.0006561] = [0.00036, 0.00066609]
  // p0 = 1 - 0.1 * (0.06 / 0.19) / sqrt(0.00036 / 0.001999) = 1 - 0.1 * 0.31578947 / 0.42437017
  // p1 = -1.9 - 0.1 * (0.072 / 0.19) / sqrt(0.00066609 / 0.001999) = -1.9 - 0.1 * 0.37894737 / 0.57724485
  expect_values(w.value, {0.92558632, -1.96564760}, "step 2");
}

TEST(OptimAdamW, DecoupledDecayShrinksTheWeightsFirst) {
  Parameter w = make_param("w", {1.0f, -2.0f}, {0.5f, -2.0f});
  AdamW opt({&w}, {.lr = 0.1, .weight_decay = 0.1});
  EXPECT_EQ(opt.kind(), "adamw");
  opt.step();
  // p *= 1 - 0.1 * 0.1 = 0.99 -> [0.99, -1.98]; then Adam's first step moves each by lr
  expect_values(w.value, {0.89, -1.88}, "step 1");
  set_grad(w, {0.5f, 1.0f});
  opt.step();
  // p *= 0.99 -> [0.8811, -1.8612]; the Adam part is FirstStepMovesEachWeightByLr's step 2:
  // [0.8811 - 0.1, -1.8612 + 0.1 * 0.42105263 / 1.58090152]
  expect_values(w.value, {0.7811, -1.83456630}, "step 2");
}

TEST(OptimAdamW, DefaultWeightDecayIsOneHundredth) {
  Parameter w = make_param("w", {1.0f}, {1.0f});
  AdamW opt({&w});
  bool found = false;
  for (const auto& [name, value] : opt.hyperparameters()) {
    if (name == "weight_decay") {
      EXPECT_EQ(value, 0.01);
      found = true;
    }
  }
  EXPECT_TRUE(found);
}

// ---------------------------------------------------------------------------------------------
// State for checkpoints

TEST(OptimState, NamesBuffersAfterTheirParameters) {
  Parameter w = make_param("0.weight", {1.0f, 2.0f}, {0.1f, 0.2f});
  Parameter b = make_param("0.bias", {3.0f}, {0.3f});
  Adam opt({&w, &b});
  const auto before = opt.state();
  std::vector<std::string> names;
  for (const auto& [name, t] : before) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight.exp_avg", "0.weight.exp_avg_sq", "0.bias.exp_avg",
                                              "0.bias.exp_avg_sq", "step"}));
  // Before the first step: zeros of the parameter's shape, and step 0.
  expect_values(before[0].second, {0.0, 0.0}, "exp_avg before");
  EXPECT_EQ(before.back().second.to_vector<std::int64_t>(), std::vector<std::int64_t>{0});
  opt.step();
  EXPECT_EQ(state_entry(opt, "step").to_vector<std::int64_t>(), std::vector<std::int64_t>{1});
}

// Runs two steps, checkpoints, restores into a fresh optimizer over copies of the parameters,
// and checks that the third step is identical in both.
void expect_round_trip(const std::function<std::unique_ptr<Optimizer>(std::vector<Parameter*>)>& make) {
  Parameter w = make_param("w", {1.0f, -2.0f, 0.5f}, {0.3f, -0.7f, 0.2f});
  Parameter b = make_param("b", {0.25f}, {-0.4f});
  auto first = make({&w, &b});
  first->step();
  set_grad(w, {-0.1f, 0.6f, 0.9f});
  set_grad(b, {0.8f});
  first->step();

  std::vector<NamedTensor> saved;
  for (const auto& [name, t] : first->state()) saved.emplace_back(name, t.clone());
  Parameter w2{"w", w.value.clone(), w.grad.clone()};
  Parameter b2{"b", b.value.clone(), b.grad.clone()};
  auto second = make({&w2, &b2});
  second->load_state(saved);
  EXPECT_EQ(second->steps(), 2);

  for (Parameter* p : {&w, &w2}) set_grad(*p, {0.5f, 0.5f, -0.5f});
  for (Parameter* p : {&b, &b2}) set_grad(*p, {0.1f});
  first->step();
  second->step();
  EXPECT_EQ(w.value.to_vector<float>(), w2.value.to_vector<float>()) << first->kind();
  EXPECT_EQ(b.value.to_vector<float>(), b2.value.to_vector<float>()) << first->kind();
}

TEST(OptimState, LoadStateContinuesIdentically) {
  expect_round_trip([](auto p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1, .momentum = 0.9}); });
  expect_round_trip([](auto p) { return std::make_unique<Adagrad>(p); });
  expect_round_trip([](auto p) { return std::make_unique<RMSprop>(p, RMSpropOptions{.momentum = 0.5}); });
  expect_round_trip([](auto p) { return std::make_unique<Adadelta>(p); });
  expect_round_trip([](auto p) { return std::make_unique<Adam>(p); });
  expect_round_trip([](auto p) { return std::make_unique<AdamW>(p); });
}

TEST(OptimState, LoadStateNamesMissingAndMismatchedEntries) {
  Parameter w = make_param("w", {1.0f, 2.0f}, {0.1f, 0.2f});
  Adam opt({&w});
  opt.step();
  auto state = opt.state();

  std::vector<NamedTensor> missing;
  for (const auto& e : state) {
    if (e.first != "w.exp_avg_sq") missing.push_back(e);
  }
  expect_throw_naming<ValueError>([&] { opt.load_state(missing); }, {"w.exp_avg_sq"});

  std::vector<NamedTensor> no_step(state.begin(), state.end() - 1);
  expect_throw_naming<ValueError>([&] { opt.load_state(no_step); }, {"step"});

  std::vector<NamedTensor> wrong = state;
  wrong[0].second = Tensor::zeros({3});
  expect_throw_naming<ShapeError>([&] { opt.load_state(wrong); }, {"w.exp_avg", "[3]", "[2]"});
  EXPECT_EQ(opt.steps(), 1) << "a failed load changes nothing";
}

TEST(OptimState, StepChecksEveryParameterBeforeChangingAny) {
  Parameter w = make_param("w", {1.0f, 2.0f}, {0.1f, 0.2f});
  Parameter b{"b", Tensor::from_vector(std::vector<float>{3.0f}, {1}),
              Tensor::from_vector(std::vector<float>{1.0f, 2.0f}, {2})};
  SGD opt({&w, &b}, {.lr = 1.0});
  expect_throw_naming<ShapeError>([&] { opt.step(); }, {"'b'", "[1]", "[2]"});
  EXPECT_EQ(w.value.to_vector<float>(), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(opt.steps(), 0);
}

// ---------------------------------------------------------------------------------------------
// Options and construction

TEST(OptimOptions, BadOptionsNameTheOptionAndValue) {
  Parameter w = make_param("w", {1.0f}, {1.0f});
  std::vector<Parameter*> ps{&w};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  expect_throw_naming<ValueError>([&] { SGD(ps, {.lr = -1}); }, {"sgd", "lr", "-1"});
  expect_throw_naming<ValueError>([&] { SGD(ps, {.momentum = -0.5}); }, {"momentum", "-0.5"});
  expect_throw_naming<ValueError>([&] { SGD(ps, {.weight_decay = nan}); }, {"weight_decay", "nan"});
  expect_throw_naming<ValueError>([&] { SGD(ps, {.nesterov = true}); }, {"momentum", "nesterov"});
  expect_throw_naming<ValueError>([&] { SGD(ps, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}); },
                                  {"dampening", "0.1"});
  expect_throw_naming<ValueError>([&] { Adagrad(ps, {.eps = -1e-10}); }, {"adagrad", "eps", "-1e-10"});
  expect_throw_naming<ValueError>([&] { RMSprop(ps, {.alpha = 1.5}); }, {"rmsprop", "alpha", "1.5"});
  expect_throw_naming<ValueError>([&] { RMSprop(ps, {.momentum = -1}); }, {"momentum", "-1"});
  expect_throw_naming<ValueError>([&] { Adadelta(ps, {.rho = 2}); }, {"adadelta", "rho", "2"});
  expect_throw_naming<ValueError>([&] { Adam(ps, {.beta1 = 1.0}); }, {"adam", "beta1", "1"});
  expect_throw_naming<ValueError>([&] { Adam(ps, {.beta2 = -0.1}); }, {"beta2", "-0.1"});
  expect_throw_naming<ValueError>([&] { AdamW(ps, {.weight_decay = -0.01}); }, {"adamw", "weight_decay", "-0.01"});
  SGD ok(ps);
  expect_throw_naming<ValueError>([&] { ok.set_lr(-0.5); }, {"lr", "-0.5"});
  EXPECT_EQ(ok.lr(), 0.01);
}

TEST(OptimOptions, ParametersMustExistAndHaveGradients) {
  expect_throw_naming<ValueError>([] { SGD(std::vector<Parameter*>{}); }, {"empty"});
  Parameter no_grad{"w", Tensor::from_vector(std::vector<float>{1.0f}, {1}), Tensor()};
  expect_throw_naming<ValueError>([&] { Adam({&no_grad}); }, {"'w'", "gradient"});
  expect_throw_naming<ValueError>([] { Adam({nullptr}); }, {"null"});
}

TEST(OptimFactory, MakesEveryKindWithTheGivenLr) {
  Parameter w = make_param("w", {1.0f}, {1.0f});
  for (const std::string kind : {"sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw"}) {
    auto opt = make_optimizer(kind, {&w}, 0.05);
    EXPECT_EQ(opt->kind(), kind);
    EXPECT_EQ(opt->lr(), 0.05);
    EXPECT_EQ(opt->params().size(), 1u);
  }
  expect_throw_naming<ValueError>([&] { make_optimizer("lbfgs", {&w}, 0.1); },
                                  {"lbfgs", "sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw"});
  expect_throw_naming<ValueError>([&] { make_optimizer("adam", {&w}, -0.1); }, {"lr"});
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping

TEST(OptimClipGradNorm, ScalesAllGradientsToTheLimit) {
  Parameter a = make_param("a", {0.0f, 0.0f}, {3.0f, 0.0f});
  Parameter b = make_param("b", {0.0f, 0.0f}, {0.0f, 4.0f});
  const Tensor norm = clip_grad_norm({&a, &b}, 1.0f);
  EXPECT_EQ(norm.shape(), Shape({1}));
  EXPECT_EQ(norm.device(), Device::cpu());
  // sqrt(3^2 + 4^2) = 5, reported before clipping
  EXPECT_EQ(norm.to_vector<float>(), std::vector<float>{5.0f});
  // each scaled by 1 / (5 + 1e-6) = 0.19999996: [0.6, 0] and [0, 0.8]
  expect_values(a.grad, {0.6, 0.0}, "a.grad");
  expect_values(b.grad, {0.0, 0.8}, "b.grad");
  // The clipped gradients now have norm 1 (to float rounding).
  expect_values(clip_grad_norm({&a, &b}, 10.0f), {1.0}, "norm after clipping");
}

TEST(OptimClipGradNorm, LeavesGradientsBelowTheLimitUntouched) {
  Parameter a = make_param("a", {0.0f, 0.0f}, {0.3f, -0.1f});
  Parameter b = make_param("b", {0.0f}, {0.7f});
  const Tensor norm = clip_grad_norm({&a, &b}, 1.0f);
  // sqrt(0.09 + 0.01 + 0.49) = sqrt(0.59) = 0.76811457
  expect_values(norm, {0.76811457}, "norm");
  EXPECT_EQ(a.grad.to_vector<float>(), (std::vector<float>{0.3f, -0.1f}));
  EXPECT_EQ(b.grad.to_vector<float>(), std::vector<float>{0.7f});
}

TEST(OptimClipGradNorm, RejectsBadArguments) {
  Parameter a = make_param("a", {0.0f}, {1.0f});
  expect_throw_naming<ValueError>([] { clip_grad_norm({}, 1.0f); }, {"empty"});
  expect_throw_naming<ValueError>([&] { clip_grad_norm({&a}, -1.0f); }, {"max_norm", "-1"});
  expect_throw_naming<ValueError>([&] { clip_grad_norm({&a}, std::nanf("")); }, {"max_norm"});
}

}  // namespace
}  // namespace gpudl
