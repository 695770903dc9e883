// Crash safety: a training run killed with SIGKILL over and over (many times in the middle of
// a checkpoint write) always leaves a whole checkpoint, never older than the last one seen,
// and resuming after every kill ends at the uninterrupted run's weights, bit for bit.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gpudl/core/io/safetensors.h"
#include "test_util.h"

extern char** environ;

namespace gpudl {
namespace {

namespace fs = std::filesystem;
constexpr const char* kSteps = "400";

pid_t start_child(const std::string& checkpoint) {
  std::vector<std::string> args = {GPUDL_CRASH_CHILD, checkpoint, kSteps};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  // posix_spawn, not fork: this process has the CPU backend's threads, a forked copy would not.
  const int rc = posix_spawn(&pid, GPUDL_CRASH_CHILD, nullptr, nullptr, argv.data(), environ);
  if (rc != 0) throw Error(std::string("posix_spawn ") + GPUDL_CRASH_CHILD + ": " + std::strerror(rc));
  return pid;
}

// Exit status of a child run to its end.
int run_to_end(const std::string& checkpoint) {
  const pid_t pid = start_child(checkpoint);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::int64_t step_of(const SafetensorsContents& c) { return std::stoll(c.metadata_value("step")); }

bool writing(const fs::path& dir, pid_t pid) {
  return fs::exists(dir / ("run.safetensors.tmp-" + std::to_string(pid)));
}

// Bitwise equality of two final checkpoints: every tensor, and the metadata that places them.
void expect_same_checkpoint(const SafetensorsContents& a, const SafetensorsContents& b, int campaign) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& [name, ta] = a.tensors[i];
    const auto& [name_b, tb] = b.tensors[i];
    ASSERT_EQ(name, name_b);
    ASSERT_EQ(ta.nbytes(), tb.nbytes()) << name;
    EXPECT_EQ(std::memcmp(ta.raw(), tb.raw(), ta.nbytes()), 0)
        << name << " differs from the uninterrupted run after campaign " << campaign;
  }
  for (const char* key : {"step", "epoch", "position", "samples_in_epoch", "rng"}) {
    EXPECT_EQ(a.metadata_value(key), b.metadata_value(key)) << key;
  }
}

TEST(CrashSafety, KilledRunsLeaveAWholeCheckpointAndResumeBitForBit) {
  const fs::path dir = fs::temp_directory_path() / ("gpudl_crash_test_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string reference = (dir / "reference.safetensors").string();
  ASSERT_EQ(run_to_end(reference), 0) << "the uninterrupted run failed";
  const SafetensorsContents expected = load_safetensors(reference);
  ASSERT_EQ(step_of(expected), std::stoll(kSteps));

  // Campaigns: from no checkpoint, kill the run again and again until a restart reaches the
  // end, then compare with the uninterrupted run; repeat until enough kills have been made.
  const std::string checkpoint = (dir / "run.safetensors").string();
  std::mt19937_64 rng(testing::test_seed());
  int kills = 0, kills_while_writing = 0, campaigns = 0;
  while (kills < 120) {
    ++campaigns;
    fs::remove(checkpoint);
    std::int64_t last_step = -1;
    int rounds = 0;
    for (;; ++rounds) {
      ASSERT_LT(rounds, 2000) << "campaign " << campaigns << " made no progress";
      const pid_t pid = start_child(checkpoint);
      const auto start = std::chrono::steady_clock::now();
      // Kill after a random delay; half the time, wait from there for a checkpoint write to
      // begin (its temporary file to appear) and kill inside it.
      const auto delay = std::chrono::microseconds(rng() % 150000);
      const bool aim_at_write = rng() % 2 == 0;
      int status = 0;
      bool exited = false;
      while (true) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
          exited = true;
          break;
        }
        const auto waited = std::chrono::steady_clock::now() - start;
        if (waited >= delay && (!aim_at_write || writing(dir, pid))) break;
        if (waited > std::chrono::seconds(30)) break;
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      if (exited) {
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the run failed on its own";
        break;  // reached the end
      }
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ++kills;
      // A kill inside a write leaves that write's temporary file behind.
      if (writing(dir, pid)) ++kills_while_writing;
      if (!fs::exists(checkpoint)) continue;  // killed before the first save
      SafetensorsContents c;
      ASSERT_NO_THROW(c = load_safetensors(checkpoint)) << "torn checkpoint after kill " << kills;
      const std::int64_t step = step_of(c);
      EXPECT_GE(step, last_step) << "the checkpoint went back in time after kill " << kills;
      last_step = step;
    }
    expect_same_checkpoint(expected, load_safetensors(checkpoint), campaigns);
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_GE(kills, 100);
  EXPECT_GE(kills_while_writing, 30) << "too few kills landed inside a checkpoint write";
  std::printf("crash test: %d kills (%d inside a checkpoint write) over %d campaigns of %s steps\n", kills,
              kills_while_writing, campaigns, kSteps);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gpudl
