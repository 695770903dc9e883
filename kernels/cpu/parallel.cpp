// The CPU backend's thread pool: helpers wait on a condition variable for a job, run one
// range of it each, and report back; the caller runs the first range itself.
#include "gpudl/kernels/cpu/parallel.h"

#include <cblas.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gpudl/kernels/launch_env.h"

namespace gpudl::kernels::cpu {
namespace {

thread_local bool in_parallel = false;

// How long a helper (or the caller, waiting for helpers) spins before it sleeps: jobs come in
// bursts of a few microseconds each (a convolution's blocks, an LSTM's time steps), and a
// sleep and wake-up through the kernel costs about as much as such a job.
constexpr auto kSpin = std::chrono::microseconds(50);

// Spins until done() or kSpin has passed; true when done() held.
template <class Done>
bool spin_until(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
#if defined(__x86_64__) || defined(__i386__)
      _mm_pause();  // spin politely: frees the core's resources for its SMT sibling
#endif
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    for (int i = 1; i < threads_; ++i) helpers_.emplace_back([this, i] { serve(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_.store(true);
    }
    wake_.notify_all();
    for (std::thread& t : helpers_) t.join();
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int threads() const { return threads_; }

  // Runs fn over `parts` ranges of [0, n); false when the helpers are busy with another caller.
  bool run(index_t n, int parts, const std::function<void(index_t, index_t)>& fn) {
    std::unique_lock<std::mutex> owner(owner_, std::try_to_lock);
    if (!owner.owns_lock()) return false;
    fn_ = &fn;
    n_ = n;
    error_ = nullptr;
    pending_.store(parts - 1, std::memory_order_relaxed);
    {
      // Under the mutex, so that a helper between its last check and its sleep cannot miss it.
      std::lock_guard<std::mutex> lock(mutex_);
      ++jobs_;
      job_.store(jobs_ << 8 | static_cast<unsigned long long>(parts), std::memory_order_release);
    }
    wake_.notify_all();
    run_part(0, parts);
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  void run_part(int part, int parts) {
    const index_t begin = n_ * part / parts, end = n_ * (part + 1) / parts;
    in_parallel = true;
    try {
      (*fn_)(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    in_parallel = false;
  }

  void serve(int index) {
    unsigned long long seen = 0;
    for (;;) {
      auto posted = [&] { return stop_.load() || job_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(posted)) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, posted);
      }
      if (stop_.load()) return;
      // The job's number and size in one word, read once: a helper that a small job did not
      // need may wake only after the next job was posted, and must see that job whole.
      seen = job_.load(std::memory_order_acquire);
      const int parts = static_cast<int>(seen & 0xff);
      if (index >= parts) continue;  // this job needs fewer threads
      run_part(index, parts);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);  // the caller may be about to sleep
        done_.notify_one();
      }
    }
  }

  const int threads_;
  std::vector<std::thread> helpers_;
  std::mutex owner_;  // one caller at a time
  std::mutex mutex_;  // sleeping and waking, and the first error
  std::condition_variable wake_, done_;
  // The job: fn_ and n_ are written by the caller before job_ moves and read by the helpers
  // it needs after; job_ is (job number << 8) | parts. A job ends only when every helper it
  // needs is done, so fn_ and n_ never change under one.
  const std::function<void(index_t, index_t)>* fn_ = nullptr;
  index_t n_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<unsigned long long> job_{0};
  unsigned long long jobs_ = 0;  // the caller's count (owner_ held)
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
};

int configured_threads() {
  if (const char* env = std::getenv("GPUDL_CPU_THREADS"); env != nullptr && *env != '\0') {
    const int v = std::atoi(env);
    if (v >= 1) return std::min(v, 64);
  }
  // The processes of a job on one machine share its cores rather than each taking them all.
  const unsigned hw = std::thread::hardware_concurrency() / static_cast<unsigned>(std::max(launch_env().local_size, 1));
  return static_cast<int>(std::clamp(hw == 0 ? 1u : hw, 1u, 16u));
}

Pool& pool() {
  // Leaked on purpose: helpers must outlive every static destructor that might still run a
  // kernel, and the process exit reclaims them.
  static Pool* p = [] {
    openblas_set_num_threads(1);
    return new Pool(configured_threads());
  }();
  return *p;
}

}  // namespace

int cpu_threads() { return pool().threads(); }

void parallel_for(index_t n, index_t grain, const std::function<void(index_t, index_t)>& fn) {
  if (n <= 0) return;
  Pool& p = pool();
  const index_t most = std::max<index_t>(n / std::max<index_t>(grain, 1), 1);
  const int parts = static_cast<int>(std::min<index_t>(p.threads(), most));
  if (parts <= 1 || in_parallel || !p.run(n, parts, fn)) fn(0, n);
}

}  // namespace gpudl::kernels::cpu
