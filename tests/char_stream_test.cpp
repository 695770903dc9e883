// A character LSTM trained through the Trainer on StreamBatches with carried state: stopped by
// step count or by time (mid-epoch, at epoch ends, again and again) and resumed, it ends at the
// uninterrupted run's weights bit for bit; a resume with other stream settings is refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gpudl/core/data/text.h"
#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/recurrent.h"
#include "gpudl/layers/sequential.h"

namespace gpudl {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kVocab = 6;
constexpr std::int64_t kStreams = 3, kSteps = 4;
constexpr int kEpochs = 3;
constexpr std::int64_t kChunks = 5;  // (70 / 3 - 1) / 4
constexpr std::int64_t kTotalSteps = kEpochs * kChunks;

// A text with structure to learn (a cycle) and some irregularity (every seventh token jumps).
std::vector<std::int32_t> token_ids(std::size_t n, std::int32_t salt) {
  std::vector<std::int32_t> ids(n);
  for (std::size_t i = 0; i < n; ++i) {
    ids[i] = static_cast<std::int32_t>((i + (i % 7 == 0 ? static_cast<std::size_t>(salt) : 0)) % kVocab);
  }
  return ids;
}

const std::vector<std::int32_t>& train_ids() {
  static const std::vector<std::int32_t> ids = token_ids(70, 2);
  return ids;
}
const std::vector<std::int32_t>& held_ids() {
  static const std::vector<std::int32_t> ids = token_ids(30, 3);
  return ids;
}

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("gpudl_char_stream_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

// Embedding, two LSTM layers with dropout between them (so the dropout generator's position
// matters), linear read-out; the LSTM's carried state goes through the Trainer's hooks and the
// checkpoint, as char_rnn does it.
struct CharModel {
  std::unique_ptr<Sequential> net;
  Recurrent* lstm = nullptr;
};

CharModel make_model(std::uint64_t seed) {
  manual_seed(seed);
  CharModel m;
  m.net = std::make_unique<Sequential>(Embedding(kVocab, 5), LSTM(5, 8, {.num_layers = 2, .dropout = 0.3f}),
                                       Linear(8, kVocab));
  m.lstm = &dynamic_cast<Recurrent&>((*m.net)[1]);
  return m;
}

TrainerOptions stream_options(Recurrent* lstm) {
  TrainerOptions o;
  o.epochs = kEpochs;
  o.log_every = 2;
  o.progress = false;
  o.record_step_losses = true;
  o.clip_grad_norm = 1.0f;
  o.schedule = std::make_shared<CosineLR>(0.02, kTotalSteps);
  use_truncated_bptt(o, *lstm);  // the hooks char_rnn uses
  return o;
}

std::vector<std::vector<float>> weights(Sequential& net) {
  std::vector<std::vector<float>> out;
  for (Parameter* p : net.parameters()) out.push_back(p->value.to_vector<float>());
  return out;
}

struct FitRun {
  std::vector<std::vector<float>> weights;
  std::vector<float> losses;
  FitResult result;
};

// One fit() of a fresh model (initialised from `init_seed`) with `adjust` applied to options.
template <class Adjust>
FitRun fit_once(std::uint64_t init_seed, Adjust adjust) {
  CharModel m = make_model(init_seed);
  data::StreamBatches train(train_ids(), kStreams, kSteps);
  data::StreamBatches held(held_ids(), 2, kSteps);
  Adam opt(m.net->parameters());
  CrossEntropyLoss loss;
  TrainerOptions o = stream_options(m.lstm);
  adjust(o);
  Trainer t(*m.net, opt, loss, o);
  FitRun r;
  r.result = t.fit(train, &held);
  r.weights = weights(*m.net);
  r.losses = t.step_losses();
  return r;
}

FitRun uninterrupted() {
  return fit_once(21, [](TrainerOptions&) {});
}

TEST(CharStream, StreamBatchesMatchTheLayoutThisTestAssumes) {
  data::StreamBatches train(train_ids(), kStreams, kSteps);
  EXPECT_EQ(train.batches_per_epoch(), kChunks);
}

TEST(CharStream, TrainingLowersTheHeldOutLossBelowChance) {
  const FitRun full = uninterrupted();
  ASSERT_EQ(full.losses.size(), static_cast<std::size_t>(kTotalSteps));
  ASSERT_EQ(full.result.epochs.size(), static_cast<std::size_t>(kEpochs));
  // Counted per token: 3 chunks ((30 / 2 - 1) / 4) of 4 steps x 2 streams of held-out text.
  EXPECT_EQ(full.result.final_test.samples, 3 * 2 * kSteps);
  EXPECT_LT(full.result.final_test.loss, std::log(static_cast<double>(kVocab)));
  EXPECT_LT(full.losses.back(), full.losses.front());
}

TEST(CharStream, AStopMidEpochResumesToTheUninterruptedWeightsBitForBit) {
  const FitRun full = uninterrupted();
  const std::string ckpt = scratch("steps.safetensors").string();
  const FitRun first = fit_once(21, [&](TrainerOptions& o) {
    o.checkpoint = ckpt;
    o.stop_after_steps = 7;  // batch 3 of epoch 2: the carried state must come from the file
  });
  ASSERT_EQ(first.result.steps, 7);
  for (std::size_t i = 0; i < 7; ++i) ASSERT_EQ(first.losses[i], full.losses[i]) << "step " << i + 1;
  ASSERT_NE(load_safetensors(ckpt).find("carried_state.h"), nullptr);
  const FitRun rest = fit_once(77, [&](TrainerOptions& o) { o.resume = ckpt; });  // other initial weights
  ASSERT_EQ(rest.losses.size(), static_cast<std::size_t>(kTotalSteps - 7));
  for (std::size_t i = 0; i < rest.losses.size(); ++i) {
    EXPECT_EQ(rest.losses[i], full.losses[7 + i]) << "step " << 8 + i;
  }
  EXPECT_EQ(rest.weights, full.weights);
  EXPECT_EQ(rest.result.final_test.loss, full.result.final_test.loss);
}

// Every fit() runs out of time after one step and writes its checkpoint; a chain of resumes,
// each on a freshly initialised model, crosses mid-epoch stops and epoch ends alike.
TEST(CharStream, StopsByTimeAfterEveryStepAndResumesToTheUninterruptedWeights) {
  const FitRun full = uninterrupted();
  const std::string ckpt = scratch("time.safetensors").string();
  fs::remove(ckpt);
  FitRun last;
  std::int64_t fits = 0;
  for (std::int64_t step = 0; step < kTotalSteps; ++step) {
    // The first fit starts as the uninterrupted run did; every later one from other weights.
    last = fit_once(step == 0 ? 21 : 100 + static_cast<std::uint64_t>(step), [&](TrainerOptions& o) {
      o.checkpoint = ckpt;
      o.max_seconds = 1e-9;
      if (step > 0) o.resume = ckpt;
    });
    ++fits;
    ASSERT_TRUE(last.result.out_of_time) << "fit " << fits;
    ASSERT_EQ(last.result.steps, step + 1);
    ASSERT_EQ(last.losses.size(), 1u);
    ASSERT_EQ(last.losses[0], full.losses[static_cast<std::size_t>(step)]) << "step " << step + 1;
  }
  EXPECT_EQ(fits, kTotalSteps);
  EXPECT_EQ(last.weights, full.weights);
}

TEST(CharStream, AResumeWithOtherStreamSettingsIsRefusedByName) {
  const std::string ckpt = scratch("settings.safetensors").string();
  fit_once(21, [&](TrainerOptions& o) {
    o.checkpoint = ckpt;
    o.stop_after_steps = 3;
  });
  auto message = [&](std::int64_t streams, std::int64_t steps) -> std::string {
    CharModel m = make_model(5);
    data::StreamBatches train(train_ids(), streams, steps);
    Adam opt(m.net->parameters());
    CrossEntropyLoss loss;
    TrainerOptions o = stream_options(m.lstm);
    o.resume = ckpt;
    Trainer t(*m.net, opt, loss, o);
    try {
      t.fit(train);
    } catch (const ValueError& e) {
      return e.what();
    }
    return "(no error)";
  };
  std::string m = message(kStreams, kSteps + 1);
  EXPECT_NE(m.find("saved with steps 4 but resuming with steps 5"), std::string::npos) << m;
  m = message(kStreams + 1, kSteps);
  EXPECT_NE(m.find("batch"), std::string::npos) << m;
  EXPECT_EQ(message(kStreams, kSteps), "(no error)");
}

}  // namespace
}  // namespace gpudl
