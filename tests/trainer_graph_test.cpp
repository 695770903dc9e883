// The Trainer's CUDA-graph mode where it must run eagerly: each reason it names, the one line
// it prints, and a run that then equals the eager one (the capture itself: tests/gpu).
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gpudl/core/runtime/rng.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"
#include "test_util.h"

namespace gpudl {
namespace {

using Mode = TrainerOptions::GraphMode;

Sequential model(bool dropout, bool sync) {
  manual_seed(5);
  Sequential net{Linear(8, 16), BatchNorm1d(16, {.sync = sync, .relu = true})};
  if (dropout) net.add(Dropout(0.2f, std::uint64_t{3}));
  net.add(Linear(16, 3));
  return net;
}

struct Setup {
  bool dropout = false, sync = false, adam = false, fp16 = false, hook = false, hook_graph_safe = false;
  std::shared_ptr<Schedule> schedule = nullptr;
};

std::string blocker(const Setup& s) {
  Sequential net = model(s.dropout, s.sync);
  std::unique_ptr<Optimizer> opt;
  if (s.adam) {
    opt = std::make_unique<Adam>(net.parameters(), AdamOptions{.lr = 1e-3});
  } else {
    opt = std::make_unique<SGD>(net.parameters(), SGDOptions{.lr = 0.1, .momentum = 0.9});
  }
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.progress = false;
  o.schedule = s.schedule;
  if (s.fp16) o.precision = Precision::kF16;
  if (s.hook) o.after_step = [] {};
  o.after_step_graph_safe = s.hook_graph_safe;
  o.cuda_graph = Mode::kOn;
  Trainer trainer(net, *opt, loss, o);
  return trainer.graph_blocker();
}

void expect_reason(const Setup& s, const std::string& part) {
  const std::string why = blocker(s);
  EXPECT_NE(why.find(part), std::string::npos) << "'" << why << "' does not say '" << part << "'";
}

TEST(TrainerGraph, NamesWhatKeepsTheStepEager) {
  // Nothing in the step itself: only the device.
  expect_reason({}, "the model is on cpu; CUDA graphs need a CUDA device");
  // Schedules and optimizers with per-step values: those values live on the device.
  expect_reason({.schedule = std::make_shared<ConstantLR>(0.1)}, "CUDA graphs need a CUDA device");
  expect_reason({.schedule = std::make_shared<CosineLR>(0.1, 100)}, "CUDA graphs need a CUDA device");
  expect_reason({.adam = true, .schedule = std::make_shared<CosineLR>(0.1, 100)}, "CUDA graphs need a CUDA device");
  // A hook marked safe to follow a replay.
  expect_reason({.hook = true, .hook_graph_safe = true}, "CUDA graphs need a CUDA device");
  // Dropout: its Philox offset lives on the device too.
  expect_reason({.dropout = true}, "CUDA graphs need a CUDA device");
  expect_reason({.sync = true}, "BatchNorm1d(16, sync, relu): SyncBatchNorm's all-reduces are not captured");
  expect_reason({.fp16 = true}, "fp16's loss scaling");
  expect_reason({.hook = true}, "after_step hook");
}

// Asked for on the CPU, the run says in one line why it runs eagerly, and is the eager run.
TEST(TrainerGraph, FallsBackToTheEagerRunWithOneLine) {
  const data::TensorDataset data = testing::blobs(300, 4);
  const auto fit = [&](Mode mode, std::string* err) {
    Sequential net = model(false, false);
    SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9});
    CrossEntropyLoss loss;
    TrainerOptions o;
    o.batch = 32;
    o.epochs = 2;
    o.progress = false;
    o.cuda_graph = mode;
    Trainer trainer(net, opt, loss, o);
    ::testing::internal::CaptureStderr();
    trainer.fit(data);
    *err = ::testing::internal::GetCapturedStderr();
    EXPECT_FALSE(trainer.graph_replaying());
    std::vector<float> weights;
    for (Parameter* p : net.parameters()) {
      for (float v : p->value.to_vector<float>()) weights.push_back(v);
    }
    return weights;
  };
  std::string on_err, off_err;
  const std::vector<float> on = fit(Mode::kOn, &on_err), off = fit(Mode::kOff, &off_err);
  EXPECT_EQ(on, off);
  EXPECT_EQ(on_err, "cuda graph: off, running eagerly: the model is on cpu; CUDA graphs need a CUDA device\n");
  EXPECT_EQ(off_err, "");
}

// What a captured step reads from the optimizer: the step's values in device memory (rewritten
// only when they change) and pointers whose move is announced by launch_version().
TEST(TrainerGraph, OptimizerStepValuesAndLaunchVersion) {
  Sequential net = model(false, false);
  SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  opt.set_multi_tensor(true);
  for (Parameter* p : net.parameters()) p->grad.copy_from(Tensor::zeros(p->grad.shape()));
  opt.step();  // builds the flat store
  const std::int64_t v = opt.launch_version();
  opt.set_lr(0.05);
  opt.upload_step_values();
  opt.step();
  EXPECT_EQ(opt.launch_version(), v) << "a new learning rate is a value in memory, not a new launch";
  opt.set_param_scale(1, 2.0);
  EXPECT_GT(opt.launch_version(), v) << "a group's factor is a kernel argument";
  const std::int64_t w = opt.launch_version();
  opt.set_param_scale(1, 2.0);
  EXPECT_EQ(opt.launch_version(), w) << "the same factor again changes nothing";
  opt.step();
  EXPECT_GT(opt.launch_version(), w) << "a new run boundary in the store moves the kernels' pointers";
  const std::int64_t x = opt.launch_version();
  opt.set_multi_tensor(false);
  opt.step();
  EXPECT_GT(opt.launch_version(), x);
}

TEST(TrainerGraph, AStepCountIsNeverNegative) {
  Sequential net = model(false, false);
  SGD opt(net.parameters(), {.lr = 0.1});
  opt.set_steps(7);
  EXPECT_EQ(opt.steps(), 7);
  EXPECT_THROW(opt.set_steps(-1), ValueError);
}

}  // namespace
}  // namespace gpudl
