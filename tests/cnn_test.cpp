// CNN building blocks together on the CPU: the course's receptive-field table, a residual CNN's
// gradients, and a small CNN learning the synthetic CIFAR-style data well above chance.
#include <gtest/gtest.h>

#include "gpudl/gpudl.h"
#include "gradcheck.h"

namespace gpudl {
namespace {

// The course's example: a 28×28 input through conv3×3, conv3×3, max2×2/2, conv3×3, conv3×3,
// max2×2/2, conv3×3 (no padding). Worked by hand with size += (k-1)·jump, jump *= stride:
//   size 26 24 12 10  8  4  2
//   RF    3  5  6 10 14 16 24
TEST(ReceptiveField, MatchesTheCourseTable) {
  Sequential net{Conv2d(1, 4, 3), Conv2d(4, 4, 3), MaxPool2d(2), Conv2d(4, 4, 3), Conv2d(4, 4, 3), MaxPool2d(2),
                 Conv2d(4, 4, 3)};
  const std::int64_t sizes[] = {26, 24, 12, 10, 8, 4, 2};
  const double fields[] = {3, 5, 6, 10, 14, 16, 24};
  Shape s{1, 28, 28};
  ReceptiveField rf;
  for (std::size_t i = 0; i < net.size(); ++i) {
    s = net[i].output_shape(s);
    net[i].update_receptive_field(rf);
    EXPECT_EQ(s[1], sizes[i]) << "layer " << i;
    EXPECT_EQ(rf.size, fields[i]) << "layer " << i;
  }
  EXPECT_EQ(rf.jump, 4.0);
  const std::string summary = net.summary({1, 28, 28});
  EXPECT_NE(summary.find("[4, 2, 2]"), std::string::npos) << summary;
}

// The wiring of a residual CNN end to end. Smooth non-linearities (Tanh, average pooling)
// stand in for ReLU and max pooling here: perturbing a weight moves every hidden value, so a
// kink inside the network would be crossed by the finite difference; the kinked layers have
// their own checks with inputs kept away from the kinks.
TEST(GradCheck, SmallResidualCnn) {
  manual_seed(3);
  Sequential net{Conv2d(2, 3, 3, {.padding = 1}), BatchNorm2d(3), Tanh(),
                 Residual(Sequential{Conv2d(3, 3, 3, {.padding = 1}), BatchNorm2d(3)}, Conv2d(3, 3, 1)),
                 AvgPool2d(2), GlobalAvgPool(), Linear(3, 2)};
  Tensor x = Tensor::from_vector(testing::random_vector(2 * 2 * 4 * 4, 201, -1.0f, 1.0f), {2, 2, 4, 4});
  testing::expect_gradients_match(net, x, 202);
}

TEST(CnnTraining, LearnsTheSyntheticDataWellAboveChance) {
  const data::TensorDataset train = data::synthetic_cifar(3000, 11), test = data::synthetic_cifar(600, 12);
  manual_seed(5);
  Sequential net{Conv2d(3, 16, 5, {.stride = 2, .padding = 2}), BatchNorm2d(16), ReLU(), MaxPool2d(2),
                 Conv2d(16, 32, 3, {.padding = 1}), BatchNorm2d(32), ReLU(), MaxPool2d(2), GlobalAvgPool(),
                 Linear(32, 10)};
  SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9, .nesterov = true});
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.batch = 64;
  o.epochs = 3;
  o.seed = 7;
  o.progress = false;
  o.augment = data::AugmentOptions{.horizontal_flip = true};
  Trainer t(net, opt, loss, o);
  const FitResult r = t.fit(train, &test);
  // Chance is 10%; this network reaches well over 60% in three epochs, a broken layer stays near 10%.
  EXPECT_GT(r.final_test.accuracy, 0.6);
}

}  // namespace
}  // namespace gpudl
