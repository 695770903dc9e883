// Learning-rate schedules at chosen steps against values worked out by hand, and their argument checks.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "gpudl/core/runtime/error.h"
#include "gpudl/core/training/schedule.h"

namespace gpudl {
namespace {

// The schedules compute in double; the hand values are exact or quoted to 8 digits.
constexpr double kScheduleTolerance = 1e-8;

TEST(Schedule, ConstantIsTheSameAtEveryStep) {
  const ConstantLR s(0.1);
  EXPECT_EQ(s.lr_at(0), 0.1);
  EXPECT_EQ(s.lr_at(123456), 0.1);
  EXPECT_EQ(s.describe(), "ConstantLR(lr=0.1)");
}

TEST(Schedule, StepDecaysEveryStepSizeSteps) {
  const StepLR s(0.1, 3, 0.5);
  EXPECT_NEAR(s.lr_at(0), 0.1, kScheduleTolerance);
  EXPECT_NEAR(s.lr_at(2), 0.1, kScheduleTolerance);     // floor(2 / 3) = 0
  EXPECT_NEAR(s.lr_at(3), 0.05, kScheduleTolerance);    // 0.1 * 0.5
  EXPECT_NEAR(s.lr_at(5), 0.05, kScheduleTolerance);    // floor(5 / 3) = 1
  EXPECT_NEAR(s.lr_at(6), 0.025, kScheduleTolerance);   // 0.1 * 0.5^2
  EXPECT_NEAR(s.lr_at(9), 0.0125, kScheduleTolerance);  // 0.1 * 0.5^3
  EXPECT_EQ(s.describe(), "StepLR(base=0.1, step_size=3, gamma=0.5)");
}

TEST(Schedule, ExponentialMultipliesByGammaEachStep) {
  const ExponentialLR s(2.0, 0.5);
  EXPECT_NEAR(s.lr_at(0), 2.0, kScheduleTolerance);
  EXPECT_NEAR(s.lr_at(1), 1.0, kScheduleTolerance);   // 2 * 0.5
  EXPECT_NEAR(s.lr_at(3), 0.25, kScheduleTolerance);  // 2 * 0.5^3
}

TEST(Schedule, CosineFallsToMinAndStaysThere) {
  const CosineLR s(1.0, 4, 0.2);
  // 0.2 + 0.8 * (1 + cos(pi t / 4)) / 2
  EXPECT_NEAR(s.lr_at(0), 1.0, kScheduleTolerance);         // 0.2 + 0.8 * 2 / 2
  EXPECT_NEAR(s.lr_at(1), 0.88284271, kScheduleTolerance);  // 0.2 + 0.4 * (1 + 0.70710678)
  EXPECT_NEAR(s.lr_at(2), 0.6, kScheduleTolerance);         // 0.2 + 0.4 * (1 + 0)
  EXPECT_NEAR(s.lr_at(3), 0.31715729, kScheduleTolerance);  // 0.2 + 0.4 * (1 - 0.70710678)
  EXPECT_NEAR(s.lr_at(4), 0.2, kScheduleTolerance);         // 0.2 + 0.4 * (1 - 1)
  EXPECT_NEAR(s.lr_at(10), 0.2, kScheduleTolerance);        // clamped at t = 4
  EXPECT_NEAR(CosineLR(0.5, 2).lr_at(1), 0.25, kScheduleTolerance);  // min_lr 0: 0.5 * (1 + 0) / 2
}

TEST(Schedule, WarmupRisesLinearlyThenHandsOver) {
  auto after = std::make_shared<StepLR>(0.1, 2, 0.5);
  const WarmupLR s(after, 4);
  EXPECT_NEAR(s.lr_at(0), 0.025, kScheduleTolerance);  // 0.1 * 1 / 4
  EXPECT_NEAR(s.lr_at(1), 0.05, kScheduleTolerance);   // 0.1 * 2 / 4
  EXPECT_NEAR(s.lr_at(2), 0.075, kScheduleTolerance);  // 0.1 * 3 / 4
  EXPECT_NEAR(s.lr_at(3), 0.1, kScheduleTolerance);    // 0.1 * 4 / 4, the end of the warm-up
  EXPECT_NEAR(s.lr_at(4), 0.1, kScheduleTolerance);    // after.lr_at(0)
  EXPECT_NEAR(s.lr_at(5), 0.1, kScheduleTolerance);    // after.lr_at(1)
  EXPECT_NEAR(s.lr_at(6), 0.05, kScheduleTolerance);   // after.lr_at(2) = 0.1 * 0.5
  EXPECT_EQ(s.describe(), "WarmupLR(warmup_steps=4, after=StepLR(base=0.1, step_size=2, gamma=0.5))");
  const WarmupLR none(after, 0);
  EXPECT_NEAR(none.lr_at(2), 0.05, kScheduleTolerance);  // no warm-up: after.lr_at(2)
}

TEST(Schedule, OneCycleMatchesPyTorchsCosinePhases) {
  // max_lr 1, T = 20, pct_start 0.3: initial 1 / 25 = 0.04, final 0.04 / 1e4 = 4e-6;
  // the rise ends at step 0.3 * 20 - 1 = 5, the fall at step 19 (14 steps later).
  const OneCycleLR s(1.0, 20);
  EXPECT_NEAR(s.lr_at(0), 0.04, kScheduleTolerance);
  // pct 1/5: 1 + (0.04 - 1) / 2 * (1 + cos(0.2 pi)) = 1 - 0.48 * 1.80901699
  EXPECT_NEAR(s.lr_at(1), 0.13167184, kScheduleTolerance);
  EXPECT_NEAR(s.lr_at(5), 1.0, kScheduleTolerance);
  // pct (12 - 5) / 14 = 1/2: 4e-6 + (1 - 4e-6) / 2 * (1 + 0)
  EXPECT_NEAR(s.lr_at(12), 0.500002, kScheduleTolerance);
  EXPECT_NEAR(s.lr_at(19), 4e-6, kScheduleTolerance);
  EXPECT_NEAR(s.lr_at(25), 4e-6, kScheduleTolerance);  // past the end: the final rate
  // A rise of zero length (pct_start * T = 1) starts at max_lr instead of dividing by zero.
  EXPECT_NEAR(OneCycleLR(1.0, 10, 0.1).lr_at(0), 1.0, kScheduleTolerance);
}

TEST(Schedule, PiecewiseLinearJoinsItsPointsAndHoldsBeyondThem) {
  // airbench's triangle over 100 steps with a peak of 1.
  const PiecewiseLinearLR s({{0, 0.2}, {23, 1.0}, {100, 0.07}});
  EXPECT_NEAR(s.lr_at(0), 0.2, kScheduleTolerance);
  EXPECT_NEAR(s.lr_at(10), 0.2 + 0.8 * 10.0 / 23.0, kScheduleTolerance);
  EXPECT_NEAR(s.lr_at(23), 1.0, kScheduleTolerance);
  EXPECT_NEAR(s.lr_at(50), 1.0 - 0.93 * 27.0 / 77.0, kScheduleTolerance);
  EXPECT_NEAR(s.lr_at(100), 0.07, kScheduleTolerance);
  EXPECT_NEAR(s.lr_at(1000), 0.07, kScheduleTolerance);
  // Before a first point later than step 0: its value.
  EXPECT_EQ(PiecewiseLinearLR({{5, 0.3}, {6, 0.1}}).lr_at(2), 0.3);
  EXPECT_EQ(PiecewiseLinearLR({{0, 0.5}}).lr_at(9), 0.5);
  EXPECT_EQ(s.describe(), "PiecewiseLinearLR((0, 0.2), (23, 1), (100, 0.07))");
}

TEST(Schedule, BadArgumentsAreNamed) {
  auto expect_naming = [](auto&& make, const std::string& part) {
    try {
      make();
      ADD_FAILURE() << "no ValueError for " << part;
    } catch (const ValueError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_naming([] { ConstantLR(-1.0); }, "lr");
  expect_naming([] { StepLR(0.1, 0, 0.5); }, "step_size");
  expect_naming([] { StepLR(0.1, 3, -0.5); }, "gamma");
  expect_naming([] { ExponentialLR(-0.1, 0.9); }, "base");
  expect_naming([] { CosineLR(0.1, 0); }, "total_steps");
  expect_naming([] { CosineLR(0.1, 10, -1.0); }, "min_lr");
  expect_naming([] { WarmupLR(nullptr, 5); }, "null");
  expect_naming([] { WarmupLR(std::make_shared<ConstantLR>(0.1), -1); }, "warmup_steps");
  expect_naming([] { OneCycleLR(1.0, 0); }, "total_steps");
  expect_naming([] { OneCycleLR(1.0, 10, 1.5); }, "pct_start");
  expect_naming([] { OneCycleLR(1.0, 10, 0.3, 0.0); }, "div_factor");
  expect_naming([] { OneCycleLR(1.0, 10, 0.3, 25, -1); }, "final_div_factor");
  expect_naming([] { (void)ConstantLR(0.1).lr_at(-1); }, "step");
  expect_naming([] { PiecewiseLinearLR({}); }, "at least one");
  expect_naming([] { PiecewiseLinearLR({{0, 0.1}, {0, 0.2}}); }, "greater than the previous");
  expect_naming([] { PiecewiseLinearLR({{-1, 0.1}}); }, "step");
  expect_naming([] { PiecewiseLinearLR({{0, 0.1}, {4, -0.2}}); }, "lr");
}

}  // namespace
}  // namespace gpudl
