// Checkpoints under file-system faults: a folder that cannot take files is reported before
// training starts, and a disk that fills up during a save (simulated with RLIMIT_FSIZE, which
// fails the write part-way as a full disk does) is reported with the path while the previous
// checkpoint stays whole and no temporary file is left behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gpudl/core/training/optim.h"
#include "gpudl/core/runtime/rng.h"
#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"

namespace gpudl {
namespace {

namespace fs = std::filesystem;

class CheckpointFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gpudl_checkpoint_faults_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  data::TensorDataset data() const {
    std::vector<float> x(96 * 4);
    std::vector<std::int64_t> y(96);
    for (std::size_t i = 0; i < y.size(); ++i) {
      y[i] = static_cast<std::int64_t>(i % 2);
      for (std::size_t j = 0; j < 4; ++j) x[i * 4 + j] = static_cast<float>((i * 7 + j * 3) % 11) / 11.0f - 0.5f;
    }
    return data::TensorDataset(Tensor::from_vector(x, {96, 4}), Tensor::from_vector(y, {96}));
  }

  TrainerOptions options(int epochs) const {
    TrainerOptions o;
    o.batch = 32;
    o.epochs = epochs;
    o.progress = false;
    o.checkpoint = (dir_ / "model.safetensors").string();
    return o;
  }

  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    return names;
  }

  fs::path dir_;
};

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST_F(CheckpointFaults, AFolderThatTakesNoFilesIsReportedBeforeTraining) {
  // A regular file where the folder should be: refused even for root, unlike permissions.
  std::ofstream(dir_ / "not_a_folder") << "x";
  manual_seed(1);
  Sequential net{Linear(4, 2)};
  const std::vector<float> before = net.parameters()[0]->value.to_vector<float>();
  SGD opt(net.parameters(), SGDOptions{.lr = 0.1});
  CrossEntropyLoss loss;
  TrainerOptions o = options(3);
  o.checkpoint = (dir_ / "not_a_folder" / "model.safetensors").string();
  Trainer t(net, opt, loss, o);
  try {
    t.fit(data());
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "Trainer: checkpoint " + o.checkpoint + ": cannot create files beside it: Not a directory");
  }
  EXPECT_EQ(net.parameters()[0]->value.to_vector<float>(), before) << "training ran before the check";
}

TEST_F(CheckpointFaults, AFullDiskDuringASaveKeepsThePreviousCheckpoint) {
  manual_seed(2);
  Sequential net{Linear(4, 64), ReLU(), Linear(64, 2)};
  Adam opt(net.parameters());
  CrossEntropyLoss loss;
  const data::TensorDataset train = data();
  {
    Trainer t(net, opt, loss, options(1));
    t.fit(train);
  }
  const std::string path = options(1).checkpoint;
  const std::string saved = bytes_of(path);
  ASSERT_GT(saved.size(), 4096u);

  // From here every file may grow to 4 KiB only; past that, write() fails with EFBIG, as a
  // full disk fails it with ENOSPC. SIGXFSZ would kill the process first: ignore it.
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string what;
  try {
    TrainerOptions o = options(2);
    o.resume = path;
    Trainer t(net, opt, loss, o);
    t.fit(train);
  } catch (const IoError& e) {
    what = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(what.empty()) << "the save past the limit did not fail";
  std::printf("full disk: %s\n", what.c_str());
  EXPECT_EQ(what.rfind("save_safetensors: " + path + ": ", 0), 0u) << what;
  EXPECT_NE(what.find("File too large"), std::string::npos) << what;
  EXPECT_EQ(bytes_of(path), saved) << "the previous checkpoint changed";
  EXPECT_NO_THROW(load_safetensors(path));
  EXPECT_EQ(listing(), std::vector<std::string>{"model.safetensors"}) << "a temporary file was left behind";
}

}  // namespace
}  // namespace gpudl
