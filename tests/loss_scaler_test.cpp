// LossScaler on the CPU: the overflow test of the gradients, unscaling, backoff and growth at
// their bounds, the checkpoint state round trip and the checks on options and malformed state.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "gpudl/core/runtime/module.h"
#include "gpudl/core/training/loss_scaler.h"
#include "test_util.h"

namespace gpudl {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Parameter make_param(const std::string& name, const std::vector<float>& grad) {
  const auto n = static_cast<std::int64_t>(grad.size());
  return Parameter{name, Tensor::zeros({n}), Tensor::from_vector(grad, {n})};
}

// Runs f, expecting a ValueError whose message holds every one of `parts`.
void expect_value_error(const std::function<void()>& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const ValueError& e) {
    const std::string what = e.what();
    for (const std::string& part : parts) EXPECT_NE(what.find(part), std::string::npos) << what << " lacks " << part;
    return;
  }
  ADD_FAILURE() << "no ValueError";
}

LossScalerOptions small_interval(std::int64_t interval) {
  LossScalerOptions o;
  o.growth_interval = interval;
  return o;
}

std::uint32_t bits(float v) { return std::bit_cast<std::uint32_t>(v); }

// ---------------------------------------------------------------------------------------------
// gradients_finite

TEST(LossScaler, InfGradientSkipsTheStepAndHalvesTheScale) {
  Parameter a = make_param("a", {1.0f, 2.0f});
  Parameter b = make_param("b", {0.5f, kInf, -3.0f});
  LossScaler scaler;
  const bool finite = LossScaler::gradients_finite({&a, &b});
  EXPECT_FALSE(finite);
  EXPECT_FALSE(scaler.update(!finite)) << "an overflowed step must not be applied";
  EXPECT_EQ(scaler.scale(), 32768.0f);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  EXPECT_EQ(scaler.clean_steps(), 0);
}

TEST(LossScaler, NegativeInfAndNanGradientsAreNotFinite) {
  Parameter ok = make_param("ok", {1.0f});
  Parameter nan = make_param("nan", {0.0f, kNaN});
  Parameter neg_inf = make_param("neg_inf", {-kInf});
  EXPECT_FALSE(LossScaler::gradients_finite({&ok, &nan}));
  EXPECT_FALSE(LossScaler::gradients_finite({&neg_inf, &ok}));

  LossScaler scaler;
  EXPECT_FALSE(scaler.update(true));
  EXPECT_EQ(scaler.scale(), 32768.0f);
  EXPECT_EQ(scaler.skipped_steps(), 1);
}

TEST(LossScaler, LargeFiniteGradientsAreFinite) {
  // Their squares (and even their plain sum) overflow f32; the test must not mistake that
  // for an overflow of the gradients.
  const float huge = std::numeric_limits<float>::max();
  Parameter a = make_param("a", {1e30f, -1e30f, 1e30f});
  Parameter b = make_param("b", std::vector<float>(1000, huge));
  EXPECT_TRUE(LossScaler::gradients_finite({&a, &b}));
}

TEST(LossScaler, EmptyListAndEmptyGradientsAreFinite) {
  EXPECT_TRUE(LossScaler::gradients_finite({}));
  Parameter empty = make_param("empty", {});
  EXPECT_TRUE(LossScaler::gradients_finite({&empty}));
}

TEST(LossScaler, InfPastTheFirstMillionElementsIsFound) {
  // Larger than one pass of the scratch buffer, with the bad value in the last, partial pass.
  std::vector<float> grad((std::size_t{1} << 20) + 3, 0.25f);
  Parameter big = make_param("big", grad);
  EXPECT_TRUE(LossScaler::gradients_finite({&big}));
  grad.back() = kInf;
  Parameter bad = make_param("bad", grad);
  EXPECT_FALSE(LossScaler::gradients_finite({&big, &bad}));
}

TEST(LossScaler, GradientsFiniteRejectsNullAndNonF32Gradients) {
  Parameter ok = make_param("ok", {1.0f});
  expect_value_error([&] { LossScaler::gradients_finite({&ok, nullptr}); }, {"parameter 1", "null"});
  Parameter ints{"ints", Tensor::zeros({2}), Tensor::zeros({2}, DType::kI32)};
  expect_value_error([&] { LossScaler::gradients_finite({&ints}); }, {"'ints'", "f32"});
}

// ---------------------------------------------------------------------------------------------
// unscale

TEST(LossScaler, UnscaleDividesByTheScale) {
  Parameter a = make_param("a", {1024.0f, -512.0f, 3.0f});
  Parameter b = make_param("b", {0.0f, 65536.0f});
  LossScalerOptions o;
  o.initial_scale = 1024.0f;
  LossScaler scaler(o);
  scaler.unscale({&a, &b});
  EXPECT_EQ(a.grad.to_vector<float>(), (std::vector<float>{1.0f, -0.5f, 3.0f / 1024.0f}));
  EXPECT_EQ(b.grad.to_vector<float>(), (std::vector<float>{0.0f, 64.0f}));
  EXPECT_EQ(scaler.scale(), 1024.0f) << "unscale leaves the scale alone";
}

// ---------------------------------------------------------------------------------------------
// update

TEST(LossScaler, GrowsAfterExactlyGrowthIntervalCleanSteps) {
  LossScaler scaler(small_interval(3));
  EXPECT_TRUE(scaler.update(false));
  EXPECT_TRUE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 65536.0f) << "two clean steps of three";
  EXPECT_EQ(scaler.clean_steps(), 2);
  EXPECT_TRUE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 131072.0f);
  EXPECT_EQ(scaler.clean_steps(), 0) << "the count restarts at a change of scale";
  for (int i = 0; i < 2; ++i) scaler.update(false);
  EXPECT_EQ(scaler.scale(), 131072.0f);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 262144.0f);
  EXPECT_EQ(scaler.skipped_steps(), 0);
}

TEST(LossScaler, OverflowRestartsTheCleanRun) {
  LossScaler scaler(small_interval(3));
  scaler.update(false);
  scaler.update(false);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 32768.0f);
  EXPECT_EQ(scaler.clean_steps(), 0);
  scaler.update(false);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 32768.0f) << "the clean steps before the overflow do not count";
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 65536.0f);
}

TEST(LossScaler, GrowthIsCappedAtMaxScale) {
  LossScalerOptions o;
  o.initial_scale = 3.0f;
  o.max_scale = 10.0f;
  o.growth_factor = 3.0f;
  o.growth_interval = 1;
  LossScaler scaler(o);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 9.0f);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 10.0f);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 10.0f);
}

TEST(LossScaler, GrowthPastFltMaxStopsAtMaxScale) {
  LossScalerOptions o;
  o.max_scale = std::numeric_limits<float>::max();
  o.initial_scale = o.max_scale;
  o.growth_interval = 1;
  LossScaler scaler(o);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), o.max_scale);
}

TEST(LossScaler, BackoffIsFlooredAtMinScale) {
  LossScalerOptions o;
  o.initial_scale = 8.0f;
  o.min_scale = 3.0f;
  LossScaler scaler(o);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 4.0f);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 3.0f);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 3.0f);
  EXPECT_EQ(scaler.skipped_steps(), 3);
}

// ---------------------------------------------------------------------------------------------
// state / restore

TEST(LossScaler, StateRoundTripIsBitExact) {
  LossScalerOptions o;
  o.initial_scale = 1000.1f;  // not a power of two: every mantissa bit matters
  o.backoff_factor = 0.3f;
  o.growth_interval = 5;
  LossScaler scaler(o);
  scaler.update(true);
  scaler.update(false);
  scaler.update(false);
  const Tensor state = scaler.state();
  EXPECT_EQ(state.dtype(), DType::kI64);
  EXPECT_EQ(state.device(), Device::cpu());
  EXPECT_EQ(state.numel(), 3);

  LossScaler resumed(o);
  resumed.restore(state);
  EXPECT_EQ(bits(resumed.scale()), bits(scaler.scale()));
  EXPECT_EQ(resumed.clean_steps(), 2);
  EXPECT_EQ(resumed.skipped_steps(), 1);
  // The resumed run continues exactly where the first one was.
  for (int i = 0; i < 3; ++i) {
    scaler.update(false);
    resumed.update(false);
  }
  EXPECT_EQ(bits(resumed.scale()), bits(scaler.scale()));
  EXPECT_EQ(resumed.clean_steps(), scaler.clean_steps());
}

TEST(LossScaler, RestoreRejectsMalformedStateAndKeepsItsOwn) {
  LossScaler scaler;
  scaler.update(true);
  auto i64 = [](std::vector<std::int64_t> v) {
    const auto n = static_cast<std::int64_t>(v.size());
    return Tensor::from_vector(v, {n});
  };
  const auto good_bits = static_cast<std::int64_t>(bits(2.0f));
  expect_value_error([&] { scaler.restore(Tensor{}); }, {"LossScaler", "undefined"});
  expect_value_error([&] { scaler.restore(Tensor::zeros({3})); }, {"dtype f32", "expected i64"});
  expect_value_error([&] { scaler.restore(i64({good_bits, 0})); }, {"has 2 elements, expected 3"});
  expect_value_error([&] { scaler.restore(i64({good_bits, 0, 0, 0})); }, {"has 4 elements, expected 3"});
  expect_value_error([&] { scaler.restore(i64({-1, 0, 0})); }, {"bits", "-1"});
  expect_value_error([&] { scaler.restore(i64({std::int64_t{1} << 32, 0, 0})); }, {"bits"});
  for (float bad : {kInf, kNaN, 0.0f, -2.0f}) {
    expect_value_error([&] { scaler.restore(i64({static_cast<std::int64_t>(bits(bad)), 0, 0})); },
                       {"scale", "finite and > 0"});
  }
  expect_value_error([&] { scaler.restore(i64({good_bits, -1, 0})); }, {"clean_steps", "-1"});
  expect_value_error([&] { scaler.restore(i64({good_bits, 0, -5})); }, {"skipped_steps", "-5"});
  EXPECT_EQ(scaler.scale(), 32768.0f);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  EXPECT_EQ(scaler.clean_steps(), 0);

  scaler.restore(i64({good_bits, 7, 9}));
  EXPECT_EQ(scaler.scale(), 2.0f);
  EXPECT_EQ(scaler.clean_steps(), 7);
  EXPECT_EQ(scaler.skipped_steps(), 9);
}

// ---------------------------------------------------------------------------------------------
// options

TEST(LossScaler, ConstructorRejectsBadOptions) {
  auto with = [](const std::function<void(LossScalerOptions&)>& change) {
    LossScalerOptions o;
    change(o);
    return o;
  };
  auto rejects = [&](const std::function<void(LossScalerOptions&)>& change,
                     std::initializer_list<std::string> parts) {
    expect_value_error([&] { LossScaler scaler(with(change)); }, parts);
  };
  rejects([](auto& o) { o.growth_interval = 0; }, {"LossScaler: growth_interval must be >= 1, got 0"});
  rejects([](auto& o) { o.growth_interval = -3; }, {"growth_interval", "-3"});
  rejects([](auto& o) { o.initial_scale = 0.0f; }, {"initial_scale", "got 0"});
  rejects([](auto& o) { o.initial_scale = kInf; }, {"initial_scale", "inf"});
  rejects([](auto& o) { o.initial_scale = kNaN; }, {"initial_scale"});
  rejects([](auto& o) { o.min_scale = -1.0f; }, {"min_scale", "-1"});
  rejects([](auto& o) { o.max_scale = kInf; }, {"max_scale", "inf"});
  rejects([](auto& o) { o.growth_factor = 1.0f; }, {"growth_factor", "> 1", "got 1"});
  rejects([](auto& o) { o.growth_factor = kNaN; }, {"growth_factor"});
  rejects([](auto& o) { o.backoff_factor = 1.0f; }, {"backoff_factor", "got 1"});
  rejects([](auto& o) { o.backoff_factor = 0.0f; }, {"backoff_factor", "got 0"});
  rejects([](auto& o) { o.backoff_factor = kNaN; }, {"backoff_factor"});
  rejects([](auto& o) { o.min_scale = 100.0f, o.max_scale = 10.0f, o.initial_scale = 50.0f; },
          {"min_scale 100", "max_scale 10"});
  rejects([](auto& o) { o.initial_scale = 0.5f; }, {"initial_scale", "[1, 16777216]", "got 0.5"});
  rejects([](auto& o) { o.initial_scale = 1e9f; }, {"initial_scale", "got 1000000000"});
  EXPECT_NO_THROW(LossScaler scaler(with([](auto& o) { o.min_scale = o.max_scale = o.initial_scale = 4.0f; })));
}

}  // namespace
}  // namespace gpudl
