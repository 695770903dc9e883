// WeightAverage: the moving average and lookahead against values worked out by hand, its state
// through a checkpoint's entries, and its errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gpudl/core/runtime/error.h"
#include "gpudl/core/training/average.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/sequential.h"
#include "test_util.h"

namespace gpudl {
namespace {

Sequential model() { return Sequential{Linear(2, 2, {.bias = true}), BatchNorm1d(2)}; }

void set_all(Module& m, float v) {
  for (auto& [name, t] : m.state()) {
    if (t.dtype() == DType::kF32) t.copy_from(Tensor::full(t.shape(), v));
  }
}

std::vector<float> values(Module& m) {
  std::vector<float> out;
  for (auto& [name, t] : m.state()) {
    if (t.dtype() != DType::kF32) continue;
    for (float v : t.to_vector<float>()) out.push_back(v);
  }
  return out;
}

TEST(WeightAverage, AveragesParametersAndRunningStatistics) {
  Sequential m = model();
  set_all(m, 1.0f);
  WeightAverage average(m);
  set_all(m, 3.0f);
  average.update(0.75);  // 0.75 * 1 + 0.25 * 3
  EXPECT_EQ(values(m), std::vector<float>(values(m).size(), 3.0f));  // the model is left alone
  average.copy_to_model();
  const std::vector<float> got = values(m);
  ASSERT_EQ(got.size(), 2u * 2 + 2 + 2 + 2 + 2 + 2);  // weight, bias, scale, shift, mean, var
  for (float v : got) EXPECT_FLOAT_EQ(v, 1.5f);
}

TEST(WeightAverage, LookaheadPullsTheModelBackAndDecayOneOnlyCopies) {
  Sequential m = model();
  set_all(m, 0.0f);
  WeightAverage average(m);
  set_all(m, 4.0f);
  average.lookahead(0.5);
  for (float v : values(m)) EXPECT_FLOAT_EQ(v, 2.0f);
  set_all(m, 10.0f);
  average.lookahead(1.0);  // the average stays; the model goes back to it
  for (float v : values(m)) EXPECT_FLOAT_EQ(v, 2.0f);
  average.lookahead(0.0);  // the average becomes the model
  for (float v : values(m)) EXPECT_FLOAT_EQ(v, 2.0f);
}

TEST(WeightAverage, FollowsAnOptimizersFlatStore) {
  // The optimizer moves the parameters into its flat store at the first step: the average must
  // read and write the tensors the model has then, not the ones it had when made.
  Sequential m = model();
  set_all(m, 1.0f);
  WeightAverage average(m);
  SGD opt(m.parameters(), {.lr = 0.0});
  opt.set_multi_tensor(true);
  for (Parameter* p : m.parameters()) p->grad.copy_from(Tensor::zeros(p->grad.shape()));
  opt.step();
  ASSERT_TRUE(opt.multi_tensor_active());
  set_all(m, 5.0f);
  average.lookahead(0.5);
  for (Parameter* p : m.parameters()) {
    for (float v : p->value.to_vector<float>()) EXPECT_FLOAT_EQ(v, 3.0f);
  }
}

TEST(WeightAverage, StateRoundTripsThroughNamedEntries) {
  Sequential m = model();
  set_all(m, 2.0f);
  WeightAverage saved(m);
  const std::vector<NamedTensor> entries = saved.state("la.");
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries[0].first, "la.0.weight");
  std::vector<NamedTensor> copies;
  for (const auto& [name, t] : entries) copies.emplace_back(name, t.clone());
  set_all(m, 7.0f);
  WeightAverage restored(m);
  restored.load_state(copies, "la.");
  restored.copy_to_model();
  for (float v : values(m)) EXPECT_FLOAT_EQ(v, 2.0f);
}

TEST(WeightAverage, BadInputIsNamed) {
  Sequential m = model();
  WeightAverage average(m);
  const auto message = testing::error_of<Error>;
  EXPECT_EQ(message([&] { average.update(1.5); }), "WeightAverage: decay must be in [0, 1], got 1.500000");
  EXPECT_EQ(message([&] { average.load_state({}, "la."); }), "WeightAverage: the state has no entry 'la.0.weight'");
  std::vector<NamedTensor> entries;
  for (const auto& [name, t] : average.state("la.")) entries.emplace_back(name, t.clone());
  entries[0].second = Tensor::zeros({3});
  EXPECT_EQ(message([&] { average.load_state(entries, "la."); }),
            "WeightAverage: entry 'la.0.weight' is [3], expected [2, 2]");
  Sequential other{Linear(2, 3)};
  WeightAverage of_other(other);
  other[0].parameters()[0]->value = Tensor::zeros({4, 2});
  EXPECT_EQ(message([&] { of_other.update(0.5); }),
            "WeightAverage: the model's entry '0.weight' [4, 2] is not the one the average was made from");
}

}  // namespace
}  // namespace gpudl
