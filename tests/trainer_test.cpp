// The training loop on the CPU: exact resume from a checkpoint, divergence handling, metrics,
// checkpoint contents, and (with GPUDL_DATA_DIR) an MLP reaching its accuracy on real MNIST.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gpudl/core/io/json.h"
#include "gpudl/core/data/mnist.h"
#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"
#include "test_util.h"

namespace gpudl {
namespace {

namespace fs = std::filesystem;

using testing::blobs;

Sequential make_net(std::uint64_t seed) {
  manual_seed(seed);
  return Sequential{Linear(8, 16), BatchNorm1d(16), ReLU(), Dropout(0.3f), Linear(16, 3)};
}

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("gpudl_trainer_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

TrainerOptions base_options() {
  TrainerOptions o;
  o.batch = 32;
  o.epochs = 3;
  o.seed = 11;
  o.log_every = 4;
  o.progress = false;
  o.record_step_losses = true;
  o.schedule = std::make_shared<CosineLR>(0.01, 24);
  return o;
}

// Passes its input through and records the input-gradient setting it has at each forward;
// throws at the forward numbered throw_at (0: never).
class InputGradProbe : public Module {
 public:
  InputGradProbe(std::vector<bool>* seen, int throw_at) : seen_(seen), throw_at_(throw_at) {}
  Tensor forward(const Tensor& x) override {
    seen_->push_back(input_grad());
    if (static_cast<int>(seen_->size()) == throw_at_) throw Error("InputGradProbe: planned failure");
    return x;
  }
  Tensor backward(const Tensor& grad_output) override { return grad_output; }
  std::string describe() const override { return "InputGradProbe"; }

 private:
  std::vector<bool>* seen_;
  int throw_at_;
};

// Seeds span all 64 bits (the drivers parse them so); a checkpoint of the largest resumes with it.
TEST(Trainer, ACheckpointKeepsADataSeedAboveTwoToTheSixtyThree) {
  const data::TensorDataset train = blobs(64, 3);
  CrossEntropyLoss loss;
  const fs::path path = scratch("big_seed.safetensors");
  TrainerOptions o = base_options();
  o.epochs = 1;
  o.seed = 18446744073709551615ull;
  o.checkpoint = path.string();
  Sequential net = make_net(3);
  Adam opt(net.parameters());
  Trainer(net, opt, loss, o).fit(train);
  TrainerOptions r = base_options();
  r.seed = 1;
  Sequential again = make_net(3);
  Adam opt2(again.parameters());
  Trainer resumed(again, opt2, loss, r);
  EXPECT_NO_THROW(resumed.load_checkpoint(path.string()));
  // The saved seed is the one the run continues with: a second checkpoint records it.
  const fs::path path2 = scratch("big_seed_again.safetensors");
  resumed.save_checkpoint(path2.string());
  EXPECT_EQ(load_safetensors(path2.string()).metadata_value("data_seed"), "18446744073709551615");
}

TEST(Trainer, FitsWithoutTheInputGradientAndRestoresTheSetting) {
  const data::TensorDataset train = blobs(96, 3);
  CrossEntropyLoss loss;
  TrainerOptions o = base_options();
  o.epochs = 1;
  std::vector<bool> seen;
  manual_seed(9);
  Sequential net{InputGradProbe(&seen, 0), Linear(8, 16), ReLU(), Linear(16, 3)};
  Adam opt(net.parameters());
  Trainer(net, opt, loss, o).fit(train);
  ASSERT_EQ(seen.size(), 3u);  // 96 samples in batches of 32
  for (const bool on : seen) EXPECT_FALSE(on);
  EXPECT_TRUE(net.input_grad());
  EXPECT_TRUE(net[0].input_grad());
  EXPECT_TRUE(net[1].input_grad());
  // A fit that fails part-way gives the setting back too.
  std::vector<bool> seen_failing;
  Sequential failing{InputGradProbe(&seen_failing, 2), Linear(8, 3)};
  Adam opt_failing(failing.parameters());
  Trainer t(failing, opt_failing, loss, o);
  EXPECT_THROW(t.fit(train), Error);
  EXPECT_EQ(seen_failing, (std::vector<bool>{false, false}));
  EXPECT_TRUE(failing.input_grad());
  EXPECT_TRUE(failing[0].input_grad());
}

// A checkpoint written at an epoch's end used to carry that epoch's loss and accuracy sums,
// and a run resumed from it added them into the next epoch's.
TEST(Trainer, AnEpochResumedFromAnEpochEndReportsTheSameTrainLoss) {
  const data::TensorDataset train = blobs(256, 1);
  const fs::path ckpt = scratch("epoch_end.safetensors");
  TrainerOptions o = base_options();
  o.epochs = 2;
  double full = 0.0, full_accuracy = 0.0;
  {
    Sequential net = make_net(5);
    Adam opt(net.parameters());
    CrossEntropyLoss loss;
    Trainer t(net, opt, loss, o);
    const FitResult r = t.fit(train);
    full = r.epochs[1].train_loss;
    full_accuracy = r.epochs[1].train_accuracy;
  }
  {
    Sequential net = make_net(5);
    Adam opt(net.parameters());
    CrossEntropyLoss loss;
    TrainerOptions first = o;
    first.epochs = 1;
    first.checkpoint = ckpt.string();
    Trainer t(net, opt, loss, first);
    t.fit(train);
  }
  Sequential net = make_net(99);  // the checkpoint supplies the weights
  Adam opt(net.parameters());
  CrossEntropyLoss loss;
  TrainerOptions second = o;
  second.resume = ckpt.string();
  Trainer t(net, opt, loss, second);
  const FitResult r = t.fit(train);
  ASSERT_EQ(r.epochs.size(), 1u);
  EXPECT_EQ(r.epochs[0].train_loss, full);
  EXPECT_EQ(r.epochs[0].train_accuracy, full_accuracy);
}

TEST(Trainer, ResumedRunRepeatsTheUninterruptedOneBitForBit) {
  const data::TensorDataset train = blobs(256, 1);  // 8 batches per epoch
  std::vector<float> full;
  {
    Sequential net = make_net(5);
    Adam opt(net.parameters());
    CrossEntropyLoss loss;
    Trainer t(net, opt, loss, base_options());
    t.fit(train);
    full = t.step_losses();
  }
  ASSERT_EQ(full.size(), 24u);
  const fs::path ckpt = scratch("resume.safetensors");
  {
    Sequential net = make_net(5);
    Adam opt(net.parameters());
    CrossEntropyLoss loss;
    TrainerOptions o = base_options();
    o.checkpoint = ckpt.string();
    o.checkpoint_every = 10;
    o.stop_after_steps = 10;  // in the middle of the second epoch
    Trainer t(net, opt, loss, o);
    t.fit(train);
    ASSERT_EQ(t.global_step(), 10);
    for (std::size_t i = 0; i < 10; ++i) ASSERT_EQ(t.step_losses()[i], full[i]) << "step " << i + 1;
  }
  {
    Sequential net = make_net(99);  // different weights: everything must come from the file
    Adam opt(net.parameters());
    CrossEntropyLoss loss;
    TrainerOptions o = base_options();
    o.resume = ckpt.string();
    o.seed = 12345;  // the data order must come from the checkpoint too
    Trainer t(net, opt, loss, o);
    t.fit(train);
    ASSERT_EQ(t.step_losses().size(), 14u);
    for (std::size_t i = 0; i < 14; ++i) EXPECT_EQ(t.step_losses()[i], full[10 + i]) << "step " << 11 + i;
  }
  // The learning itself happened: the last steps' loss is far below chance (ln 3 for three
  // classes), where an untrained or broken model stays. A mean of four steps, since one
  // batch's loss (with dropout) is noisy; "below half the first loss" was too tight for 24
  // steps (0.539 against 0.537 with seed 1210021430).
  const std::size_t n = full.size();
  const float last4 = (full[n - 1] + full[n - 2] + full[n - 3] + full[n - 4]) / 4.0f;
  EXPECT_LT(last4, 0.6f * std::log(3.0f));
}

TEST(Trainer, StopsOnANaNLossNamingTheStepAndKeepsTheLastGoodCheckpoint) {
  data::TensorDataset train = blobs(128, 2);
  train.inputs().data<float>()[70 * 8] = std::nanf("");  // sample 70: third batch of 32, unshuffled
  Sequential net = make_net(6);
  SGD opt(net.parameters(), {.lr = 0.01});
  CrossEntropyLoss loss;
  TrainerOptions o = base_options();
  o.shuffle = false;
  o.checkpoint = scratch("nan.safetensors").string();
  o.checkpoint_every = 1;
  o.schedule = nullptr;
  Trainer t(net, opt, loss, o);
  try {
    t.fit(train);
    FAIL() << "expected DivergenceError";
  } catch (const DivergenceError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("loss is NaN at step 3 (epoch 1, batch 3)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("keeps the last good state"), std::string::npos) << msg;
  }
  const SafetensorsContents saved = load_safetensors(o.checkpoint);
  EXPECT_EQ(saved.metadata_value("step"), "2");
  for (const auto& [name, tensor] : saved.tensors) {
    if (tensor.dtype() != DType::kF32) continue;
    for (float v : tensor.to_vector<float>()) ASSERT_TRUE(std::isfinite(v)) << name;
  }
}

TEST(Trainer, WritesMetricsLinesAndARestorableCheckpoint) {
  const data::TensorDataset train = blobs(96, 3), test = blobs(60, 4);
  Sequential net = make_net(7);
  Adam opt(net.parameters());
  CrossEntropyLoss loss;
  TrainerOptions o = base_options();
  o.metrics = scratch("metrics.jsonl").string();
  o.checkpoint = scratch("epoch.safetensors").string();
  o.record_step_losses = false;
  Trainer t(net, opt, loss, o);
  const FitResult r = t.fit(train, &test);
  ASSERT_EQ(r.epochs.size(), 3u);
  EXPECT_GT(r.final_test.accuracy, 0.5);  // three well-separated blobs
  EXPECT_TRUE(net.input_grad());  // fit() turns it off for its own steps only
  t.write_metrics(json::Object{{"event", "final"}, {"test_accuracy", r.final_test.accuracy}});
  std::ifstream in(o.metrics);
  std::string line;
  std::vector<json::Value> records;
  while (std::getline(in, line)) records.push_back(json::parse(line));
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0]["event"].as_string(), "epoch");
  EXPECT_EQ(records[2]["step"].as_int(), 9);
  EXPECT_TRUE(records[2].contains("test_accuracy"));
  EXPECT_EQ(records[3]["event"].as_string(), "final");

  const SafetensorsContents saved = load_safetensors(o.checkpoint);
  EXPECT_EQ(saved.metadata_value("format"), "gpudl-checkpoint-1");
  EXPECT_EQ(saved.metadata_value("optimizer"), "adam");
  EXPECT_EQ(saved.metadata_value("epoch"), "3");
  EXPECT_NE(saved.find("model.1.running_mean"), nullptr);
  EXPECT_NE(saved.find("optimizer.0.weight.exp_avg"), nullptr);
  // Another optimizer kind cannot take this state.
  Sequential other = make_net(8);
  SGD sgd(other.parameters());
  Trainer wrong(other, sgd, loss, base_options());
  EXPECT_THROW(wrong.load_checkpoint(o.checkpoint), ValueError);
  Trainer right(net, opt, loss, base_options());
  EXPECT_NO_THROW(right.load_checkpoint(o.checkpoint));
  EXPECT_EQ(right.global_step(), 9);
}

TEST(Trainer, RejectsAFileThatIsNotACheckpoint) {
  const fs::path path = scratch("plain.safetensors");
  save_safetensors(path.string(), {{"w", Tensor::zeros({2})}});
  Sequential net = make_net(9);
  SGD opt(net.parameters());
  CrossEntropyLoss loss;
  Trainer t(net, opt, loss, base_options());
  try {
    t.load_checkpoint(path.string());
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("not a libgpudl checkpoint"), std::string::npos) << e.what();
  }
  TrainerOptions bad;
  bad.batch = 0;
  EXPECT_THROW(Trainer(net, opt, loss, bad), ValueError);
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A fresh run starts the metrics file afresh (two runs' epochs mixed in one file would read as
// one run of twice the epochs); a resumed run appends, so the file tells the model's story.
TEST(Trainer, AFreshFitTruncatesTheMetricsFileAndAResumedOneAppends) {
  const data::TensorDataset train = blobs(96, 3);  // 3 batches of 32
  const std::string metrics = scratch("truncate.jsonl").string();
  const std::string ckpt = scratch("truncate.safetensors").string();
  auto run = [&](std::uint64_t net_seed, int epochs, bool resume) {
    Sequential net = make_net(net_seed);
    Adam opt(net.parameters());
    CrossEntropyLoss loss;
    TrainerOptions o = base_options();
    o.epochs = epochs;
    o.metrics = metrics;
    o.checkpoint = ckpt;
    if (resume) o.resume = ckpt;
    Trainer t(net, opt, loss, o);
    t.fit(train);
  };
  run(1, 2, false);
  ASSERT_EQ(read_lines(metrics).size(), 2u);
  run(2, 1, false);  // fresh again: only its own line may remain
  std::vector<std::string> lines = read_lines(metrics);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json::parse(lines[0])["epoch"].as_int(), 1);
  EXPECT_EQ(json::parse(lines[0])["step"].as_int(), 3);
  run(3, 3, true);  // resumes after epoch 1: epochs 2 and 3 follow its line
  lines = read_lines(metrics);
  ASSERT_EQ(lines.size(), 3u);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(json::parse(lines[i])["epoch"].as_int(), static_cast<std::int64_t>(i + 1)) << lines[i];
  }
}

// Any change that reorders the data makes a resumed run a different run: refused, by name.
TEST(Trainer, ResumeRefusesAChangedShuffleOrBatchNamingIt) {
  const data::TensorDataset train = blobs(128, 4);
  const std::string ckpt = scratch("order.safetensors").string();
  {
    Sequential net = make_net(3);
    Adam opt(net.parameters());
    CrossEntropyLoss loss;
    TrainerOptions o = base_options();
    o.shuffle = true;
    o.checkpoint = ckpt;
    o.stop_after_steps = 2;  // mid-epoch: the stop writes its own checkpoint
    Trainer t(net, opt, loss, o);
    t.fit(train);
  }
  ASSERT_EQ(load_safetensors(ckpt).metadata_value("step"), "2");
  auto resume_message = [&](const TrainerOptions& changed) -> std::string {
    Sequential net = make_net(3);
    Adam opt(net.parameters());
    CrossEntropyLoss loss;
    Trainer t(net, opt, loss, changed);
    try {
      t.fit(train);
    } catch (const ValueError& e) {
      return e.what();
    }
    return "(no error)";
  };
  TrainerOptions no_shuffle = base_options();
  no_shuffle.resume = ckpt;
  no_shuffle.shuffle = false;
  std::string m = resume_message(no_shuffle);
  EXPECT_NE(m.find("shuffle"), std::string::npos) << m;
  EXPECT_NE(m.find(ckpt), std::string::npos) << m;
  TrainerOptions other_batch = base_options();
  other_batch.resume = ckpt;
  other_batch.batch = 16;
  m = resume_message(other_batch);
  EXPECT_NE(m.find("batch 32 but resuming with batch 16"), std::string::npos) << m;
  TrainerOptions drop = base_options();
  drop.resume = ckpt;
  drop.drop_last = true;
  m = resume_message(drop);
  EXPECT_NE(m.find("drop_last"), std::string::npos) << m;
  // Unchanged settings resume (the seed comes from the checkpoint, whatever the options say).
  TrainerOptions same = base_options();
  same.resume = ckpt;
  same.seed = 999;
  EXPECT_EQ(resume_message(same), "(no error)");
}

// A stop by time writes the checkpoint of the step it stopped at, and says why it stopped.
TEST(Trainer, AStopByTimeWritesACheckpointAtThatStep) {
  const data::TensorDataset train = blobs(128, 5);
  const std::string ckpt = scratch("time.safetensors").string();
  Sequential net = make_net(4);
  Adam opt(net.parameters());
  CrossEntropyLoss loss;
  TrainerOptions o = base_options();
  o.checkpoint = ckpt;
  o.max_seconds = 1e-9;  // up after the first step
  Trainer t(net, opt, loss, o);
  const FitResult r = t.fit(train);
  EXPECT_TRUE(r.out_of_time);
  EXPECT_EQ(r.steps, 1);
  EXPECT_TRUE(r.epochs.empty());
  EXPECT_EQ(load_safetensors(ckpt).metadata_value("step"), "1");
  EXPECT_EQ(load_safetensors(ckpt).metadata_value("position"), "1");
  TrainerOptions bad = base_options();
  bad.max_seconds = -1.0;
  EXPECT_THROW(Trainer(net, opt, loss, bad), ValueError);
}

// Extra entries travel with the checkpoint under their own names and come back on resume
// before the model is touched; the trainer's own prefixes are not theirs to take.
TEST(Trainer, ExtraCheckpointEntriesAreSavedAndOfferedBackOnResume) {
  const data::TensorDataset train = blobs(64, 6);
  const std::string ckpt = scratch("extra.safetensors").string();
  const Tensor tag = Tensor::from_vector(std::vector<float>{1.0f, 2.0f, 3.0f}, {3});
  Sequential net = make_net(5);
  Adam opt(net.parameters());
  CrossEntropyLoss loss;
  TrainerOptions o = base_options();
  o.epochs = 1;
  o.checkpoint = ckpt;
  o.checkpoint_extra = [&] { return std::vector<NamedTensor>{{"tag", tag}}; };
  Trainer t(net, opt, loss, o);
  t.fit(train);
  const SafetensorsContents saved = load_safetensors(ckpt);
  ASSERT_NE(saved.find("tag"), nullptr);
  EXPECT_EQ(saved.find("tag")->to_vector<float>(), tag.to_vector<float>());

  std::vector<std::string> offered;
  TrainerOptions r = base_options();
  r.restore_extra = [&](const std::string& path, const std::vector<NamedTensor>& extra) {
    EXPECT_EQ(path, ckpt);
    for (const auto& [name, value] : extra) offered.push_back(name);
    throw ValueError(path + ": planned refusal");
  };
  Trainer refusing(net, opt, loss, r);
  EXPECT_THROW(refusing.load_checkpoint(ckpt), ValueError);
  EXPECT_EQ(offered, std::vector<std::string>{"tag"});

  TrainerOptions reserved = o;
  reserved.checkpoint_extra = [&] { return std::vector<NamedTensor>{{"model.tag", tag}}; };
  Trainer clash(net, opt, loss, reserved);
  EXPECT_THROW(clash.save_checkpoint(scratch("clash.safetensors").string()), ValueError);
}

// Trains the mlp_mnist network briefly on the real data when GPUDL_DATA_DIR is set (CI sets it;
// there the files must exist, so a missing file fails the test instead of skipping it).
TEST(MnistAccuracy, MlpLearnsRealDigits) {
  const char* root = std::getenv("GPUDL_DATA_DIR");
  if (root == nullptr || *root == '\0') GTEST_SKIP() << "GPUDL_DATA_DIR is not set";
  const std::string dir = std::string(root) + "/mnist";
  data::TensorDataset train = data::mnist(dir, data::Split::kTrain);
  data::TensorDataset test = data::mnist(dir, data::Split::kTest);
  train.normalize(0.1307f, 0.3081f);
  test.normalize(0.1307f, 0.3081f);
  manual_seed(1);
  Sequential net{Flatten(), Linear(784, 256), ReLU(), Dropout(0.1f), Linear(256, 10)};
  Adam opt(net.parameters(), {.lr = 1e-3});
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.batch = 128;
  o.epochs = 2;
  o.seed = 1;
  o.progress = false;
  Trainer t(net, opt, loss, o);
  const FitResult r = t.fit(train, &test);
  // Two epochs of this network reach about 97.5%; a broken layer or optimizer stays far below.
  EXPECT_GE(r.final_test.accuracy, 0.97);
}

}  // namespace
}  // namespace gpudl
