// TensorBoard event files: CRC-32C against its check value, the TFRecord framing read back by
// hand, a training run's every scalar read back by TensorBoard's own reader, and the errors.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gpudl/gpudl.h"
#include "python_util.h"
#include "test_util.h"

namespace gpudl {
namespace {

namespace fs = std::filesystem;

// A fresh folder per test, removed afterwards.
class TensorBoard : public ::testing::Test {
 protected:
  testing::ScratchDir scratch_{"gpudl_tensorboard"};
  const std::string& dir_ = scratch_.path();
};

TEST_F(TensorBoard, Crc32cMatchesItsCheckValue) {
  // The CRC-32C catalogue's check value, and RFC 3720's 32 zero bytes.
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  const std::vector<unsigned char> zeros(32, 0);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  const std::uint32_t c = 0xE3069283u;
  EXPECT_EQ(masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xA282EAD8u);
}

// Each record: u64 length, masked CRC of those 8 bytes, the data, masked CRC of the data.
TEST_F(TensorBoard, RecordsAreFramedAndChecksummed) {
  std::string path;
  {
    TensorBoardWriter w(dir_ + "/run");
    w.scalar("train/loss", 0.25, 7, 1000.0);
    w.text("run/model", "`Linear(2, 3)`", 0, 1000.0);
    path = w.path();
  }
  EXPECT_EQ(fs::path(path).parent_path(), fs::path(dir_ + "/run"));
  EXPECT_EQ(fs::path(path).filename().string().rfind("events.out.tfevents.", 0), 0u);
  const std::string bytes = testing::read_text(path);
  std::size_t at = 0;
  int records = 0;
  while (at < bytes.size()) {
    ASSERT_LE(at + 12, bytes.size());
    std::uint64_t length = 0;
    std::uint32_t length_crc = 0, data_crc = 0;
    std::memcpy(&length, bytes.data() + at, 8);
    std::memcpy(&length_crc, bytes.data() + at + 8, 4);
    EXPECT_EQ(length_crc, masked_crc32c(bytes.data() + at, 8));
    ASSERT_LE(at + 12 + length + 4, bytes.size());
    std::memcpy(&data_crc, bytes.data() + at + 12 + length, 4);
    EXPECT_EQ(data_crc, masked_crc32c(bytes.data() + at + 12, length));
    at += 12 + length + 4;
    ++records;
  }
  EXPECT_EQ(records, 3);  // the file version, the scalar, the text
  // The scalar's Event: wall_time (field 1, fixed64) 1000.0, step (2, varint) 7, then the summary.
  const std::size_t second = 12 + 4 + static_cast<std::size_t>(bytes[0]);
  EXPECT_EQ(static_cast<unsigned char>(bytes[second + 12]), 0x09);
  double wall = 0.0;
  std::memcpy(&wall, bytes.data() + second + 13, 8);
  EXPECT_EQ(wall, 1000.0);
  EXPECT_EQ(static_cast<unsigned char>(bytes[second + 21]), 0x10);
  EXPECT_EQ(static_cast<unsigned char>(bytes[second + 22]), 7);
}

TEST_F(TensorBoard, AFolderThatCannotBeWrittenIsOneLineAndNoFile) {
  const std::string file = dir_ + "/a_file";
  { std::ofstream(file) << "x"; }
  try {
    TensorBoardWriter w(file + "/run");
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("tensorboard: cannot create the folder " + file + "/run"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  // Through the Trainer: before any step, and nothing left behind.
  data::TensorDataset train = testing::blobs(64, 1);
  manual_seed(3);
  Sequential net{Linear(8, 3)};
  SGD opt(net.parameters(), {.lr = 0.1});
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.progress = false;
  o.batch = 16;
  o.tensorboard = file + "/run";
  Trainer trainer(net, opt, loss, o);
  EXPECT_THROW(trainer.fit(train), IoError);
  EXPECT_EQ(trainer.global_step(), 0);
  EXPECT_EQ(testing::read_text(file), "x");
}

// A short run with BN (so the count and statistics move), a schedule and a test set: every
// scalar TensorBoard's reader finds is where the run put it, and the metrics file's numbers
// are all there.
TEST_F(TensorBoard, ItsOwnReaderReadsEveryScalarOfARun) {
  const std::string missing = testing::python_missing("import tensorboard");
  if (!missing.empty()) GTEST_SKIP() << missing;
  data::TensorDataset train = testing::blobs(240, 1), test = testing::blobs(60, 2);
  manual_seed(4);
  Sequential net{Linear(8, 16), BatchNorm1d(16), ReLU(), Linear(16, 3)};
  SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.progress = false;
  o.batch = 16;  // 15 steps an epoch
  o.epochs = 2;
  o.log_every = 4;
  o.schedule = std::make_shared<CosineLR>(0.1, 30);
  o.metrics = dir_ + "/metrics.jsonl";
  o.tensorboard = dir_ + "/tb";
  Trainer trainer(net, opt, loss, o);
  trainer.fit(train, &test);

  const std::string script = std::string(GPUDL_INTEROP_DIR) + "/read_tensorboard.py";
  const auto [status, out] = testing::run_python(script, testing::shell_quote(dir_ + "/tb"), dir_ + "/read.log");
  ASSERT_EQ(status, 0) << out;
  const json::Value read = json::parse(out);
  const json::Value& scalars = *read.find("scalars");
  auto points = [&](const std::string& tag) {
    std::map<std::int64_t, double> p;
    if (const json::Value* v = scalars.find(tag)) {
      for (std::size_t i = 0; i < v->size(); ++i) p[v->at(i).at(0).as_int()] = v->at(i).at(1).as_double();
    }
    return p;
  };
  // Log points: steps 4, 8, 12 of each epoch (the epoch's own end is an epoch record).
  const std::map<std::int64_t, double> lr = points("train/lr");
  std::vector<std::int64_t> steps;
  for (const auto& [step, value] : lr) steps.push_back(step);
  EXPECT_EQ(steps, (std::vector<std::int64_t>{4, 8, 12, 19, 23, 27}));
  // The rate of the last step before each point, as a float.
  for (const auto& [step, value] : lr) {
    EXPECT_EQ(value, static_cast<double>(static_cast<float>(o.schedule->lr_at(step - 1)))) << step;
  }
  for (const std::string tag : {"train/loss", "train/accuracy", "train/samples_per_second"}) {
    EXPECT_EQ(points(tag).size(), 6u) << tag;
  }
  // Every number of every metrics record, at its step.
  int checked = 0;
  std::ifstream metrics(o.metrics);
  for (std::string line; std::getline(metrics, line);) {
    const json::Value record = json::parse(line);
    const std::string event = record.find("event")->as_string();
    const std::int64_t step = record.find("step")->as_int();
    for (const auto& [name, value] : record.as_object()) {
      if (!value.is_number() || name == "step" || name == "epoch") continue;
      const std::map<std::int64_t, double> p = points(event + "/" + name);
      ASSERT_EQ(p.count(step), 1u) << event << "/" << name << " at step " << step;
      EXPECT_EQ(p.at(step), static_cast<double>(static_cast<float>(value.as_double()))) << event << "/" << name;
      ++checked;
    }
  }
  EXPECT_GE(checked, 2 * 6);  // two epochs of loss, accuracies, seconds, samples/s, lr
  EXPECT_EQ(points("epoch/test_accuracy").size(), 2u);
  const json::Value& texts = *read.find("texts");
  ASSERT_NE(texts.find("run/settings"), nullptr);
  EXPECT_NE(texts.find("run/settings")->at(0).as_string().find("| optimizer momentum | 0.9 |"), std::string::npos);
  ASSERT_NE(texts.find("run/model"), nullptr);
  EXPECT_NE(texts.find("run/model")->at(0).as_string().find("parameters"), std::string::npos);
}

}  // namespace
}  // namespace gpudl
