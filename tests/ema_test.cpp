// The Trainer's moving average of the weights (TrainerOptions::ema): its value by hand, the
// evaluation that uses it, and a run stopped and resumed that ends with the very same average.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gpudl/gpudl.h"
#include "python_util.h"
#include "test_util.h"

namespace gpudl {
namespace {

Sequential make_net() {
  manual_seed(21);
  return Sequential{Linear(8, 16), BatchNorm1d(16), ReLU(), Linear(16, 3)};
}

TrainerOptions options() {
  TrainerOptions o;
  o.batch = 32;
  o.epochs = 3;  // 8 steps each
  o.seed = 5;
  o.progress = false;
  o.ema = 0.8;
  o.schedule = std::make_shared<CosineLR>(0.05, 24);
  return o;
}

std::vector<float> flat(const std::vector<NamedTensor>& state) {
  std::vector<float> out;
  for (const auto& [name, t] : state) {
    if (t.dtype() != DType::kF32) continue;
    for (float v : t.to_vector<float>()) out.push_back(v);
  }
  return out;
}

TEST(Ema, FollowsEveryStepAndIsWhatEvaluationSees) {
  const data::TensorDataset train = testing::blobs(256, 3), test = testing::blobs(64, 4);
  Sequential net = make_net();
  const std::vector<float> start = flat(net.state());
  SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9});
  CrossEntropyLoss loss;
  TrainerOptions o = options();
  o.epochs = 1;
  o.stop_after_steps = 1;
  o.schedule = nullptr;
  Trainer trainer(net, opt, loss, o);
  ASSERT_NE(trainer.weight_average(), nullptr);
  const FitResult r = trainer.fit(train, &test);
  // After one step: 0.8 x the start + 0.2 x the weights now, entry by entry.
  const std::vector<float> now = flat(net.state()), average = flat(trainer.weight_average()->state(""));
  ASSERT_EQ(average.size(), now.size());
  for (std::size_t i = 0; i < now.size(); ++i) {
    EXPECT_NEAR(average[i], 0.8f * start[i] + 0.2f * now[i], 1e-6f * (1.0f + std::fabs(now[i]))) << i;
  }
  // The test result is the average's; the model kept the trained weights throughout.
  EXPECT_EQ(flat(net.state()), now);
  trainer.weight_average()->copy_to_model();
  const EvalResult averaged = trainer.evaluate(test);
  EXPECT_EQ(r.final_test.loss, averaged.loss);
  EXPECT_EQ(r.final_test.accuracy, averaged.accuracy);
  EXPECT_THROW(Trainer(net, opt, loss, [] {
                 TrainerOptions bad = options();
                 bad.ema = 1.0;
                 return bad;
               }()),
               ValueError);
}

TEST(Ema, AResumedRunEndsWithTheSameAverage) {
  const data::TensorDataset train = testing::blobs(256, 3), test = testing::blobs(64, 4);
  testing::ScratchDir dir("gpudl_ema");
  const std::string ckpt = dir.path() + "/run.safetensors";
  std::vector<float> whole_average, whole_weights;
  double whole_test = 0.0;
  {
    Sequential net = make_net();
    SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9});
    CrossEntropyLoss loss;
    Trainer t(net, opt, loss, options());
    whole_test = t.fit(train, &test).final_test.loss;
    whole_average = flat(t.weight_average()->state(""));
    whole_weights = flat(net.state());
  }
  {
    Sequential net = make_net();
    SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9});
    CrossEntropyLoss loss;
    TrainerOptions o = options();
    o.checkpoint = ckpt;
    o.stop_after_steps = 11;  // mid-epoch
    Trainer t(net, opt, loss, o);
    t.fit(train, &test);
  }
  // The checkpoint holds the average beside the model.
  const SafetensorsContents file = load_safetensors(ckpt);
  EXPECT_NE(file.find("trainer.ema.0.weight"), nullptr);
  EXPECT_NE(file.find("trainer.ema.1.running_mean"), nullptr);
  {
    Sequential net = make_net();
    SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9});
    CrossEntropyLoss loss;
    TrainerOptions o = options();
    o.resume = ckpt;
    Trainer t(net, opt, loss, o);
    const FitResult r = t.fit(train, &test);
    EXPECT_EQ(flat(t.weight_average()->state("")), whole_average);
    EXPECT_EQ(flat(net.state()), whole_weights);
    EXPECT_EQ(r.final_test.loss, whole_test);
  }
}

}  // namespace
}  // namespace gpudl
