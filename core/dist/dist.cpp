// The job's process groups: launcher environment, MPI start-up and shut-down, the one-rank
// group, and MPI's collectives on CPU tensors with a timeout on every wait.
#include "gpudl/core/dist/dist.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "gpudl/config.h"
#include "gpudl/core/detail/clock.h"
#include "gpudl/core/dist/detail/groups.h"
#include "gpudl/core/runtime/format.h"
#include "gpudl/core/runtime/ops.h"
#include "gpudl/kernels/launch_env.h"

#if GPUDL_HAVE_MPI
// MPI's C interface only: the C++ bindings would need a library of their own at link time.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace gpudl::dist {

namespace {

std::atomic<double> g_timeout{0.0};  // 0: not set by set_timeout
std::atomic<bool> g_broken{false};

}  // namespace

bool built_with_mpi() { return GPUDL_HAVE_MPI != 0; }
bool built_with_nccl() { return GPUDL_HAVE_NCCL != 0; }

void set_timeout(double seconds) {
  if (!(seconds > 0.0)) throw ValueError("dist::set_timeout: seconds must be > 0, got " + format_number(seconds));
  g_timeout = seconds;
}

double default_timeout() {
  if (g_timeout > 0.0) return g_timeout;
  if (const char* v = std::getenv("GPUDL_DIST_TIMEOUT"); v != nullptr && *v != '\0') {
    char* end = nullptr;
    const double s = std::strtod(v, &end);
    if (end != v && *end == '\0' && s > 0.0) return s;
    throw ValueError(std::string("GPUDL_DIST_TIMEOUT is '") + v + "', expected a number of seconds > 0");
  }
  return 300.0;
}

void ProcessGroup::all_reduce(const Tensor& t, ReduceOp op) { all_reduce_async(t, op)->wait(); }

void ProcessGroup::check(const char* op, const Tensor& t, bool reduction) const {
  if (!t.defined()) throw ValueError(backend() + " " + op + ": undefined tensor");
  if (t.device() != device_) {
    throw DeviceError(backend() + " " + op + ": tensor on " + t.device().str() + ", the group is on " + device_.str());
  }
  if (reduction && t.dtype() != DType::kF32 &&
      !(backend() == "nccl" && (t.dtype() == DType::kBF16 || t.dtype() == DType::kF16))) {
    throw ValueError(backend() + " " + op + ": cannot reduce dtype " + dtype_name(t.dtype()));
  }
}

std::string ProcessGroup::peers() const {
  if (size_ == 2) return "rank " + std::to_string(1 - rank_);
  return "one of the other " + std::to_string(size_ - 1) + " ranks";
}

void ProcessGroup::fail(const char* op, const std::string& why) const {
  throw DistError("rank " + std::to_string(rank_) + ": " + backend() + " " + op + " " + why);
}

namespace detail {
void mark_broken() { g_broken = true; }
bool broken() { return g_broken; }
}  // namespace detail

namespace {

// One process: every collective is the identity (a mean of one value is the value).
class SingleGroup final : public detail::GroupBase {
 public:
  SingleGroup(Device device, double timeout) : GroupBase(0, 1, device, timeout) {}
  std::string backend() const override { return "single"; }
  std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override {
    check("all_reduce", t, true);
    (void)op;
    struct Done final : Work {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  void broadcast(const Tensor& t, int root) override {
    check("broadcast", t, false);
    if (root != 0) fail("broadcast", "from rank " + std::to_string(root) + " of a one-rank job");
  }
  void all_gather(const Tensor& out, const Tensor& in) override {
    check("all_gather", in, false);
    check("all_gather", out, false);
    ops::copy(out.reshape({-1}), in.reshape({-1}));
  }
  void reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op) override {
    check("reduce_scatter", in, true);
    (void)op;
    ops::copy(out.reshape({-1}), in.reshape({-1}));
  }
  void barrier() override {}
};

#if GPUDL_HAVE_MPI

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<std::size_t>(len));
}

// MPI on host memory. Where the machine has a core to spare, all MPI traffic after start-up runs
// on one communication thread, in the order the collectives were called (so every rank issues
// them in one order): a blocking collective waits for its turn and its end, an asynchronous
// all-reduce progresses there while the caller computes (MPI moves a non-blocking collective
// only inside MPI calls). Without a spare core the caller's thread makes the calls. Either
// way each collective is started non-blocking and polled against the clock, so a peer that
// died or hangs costs this rank at most the timeout, never a silent hang.
class MpiGroup final : public detail::GroupBase {
 public:
  // `threaded`: collectives on a thread of their own; else on the caller's, where an
  // asynchronous one only moves inside later MPI calls.
  MpiGroup(int rank, int size, double timeout, bool threaded) : GroupBase(rank, size, Device::cpu(), timeout) {
    if (threaded) worker_ = std::thread([this] { serve(); });
  }
  // The world keeps the group to the end of the process; the thread idles until then.
  ~MpiGroup() override {
    if (!worker_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    worker_.join();
  }
  std::string backend() const override { return "mpi"; }

  std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override {
    check("all_reduce", t, true);
    count(t);  // refuses what MPI's int count cannot say
    auto work = std::make_unique<MpiWork>(this, t, op);
    work->job = submit("all_reduce", t.nbytes(), [t](MPI_Request* r) {
      return MPI_Iallreduce(MPI_IN_PLACE, t.raw(), static_cast<int>(t.numel()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, r);
    });
    return work;
  }
  void broadcast(const Tensor& t, int root) override {
    check("broadcast", t, false);
    if (root < 0 || root >= size()) fail("broadcast", "from rank " + std::to_string(root) + " of " + std::to_string(size()));
    const int n = count(t);
    finish(submit("broadcast", t.nbytes(),
                  [&t, n, root](MPI_Request* r) { return MPI_Ibcast(t.raw(), n, MPI_BYTE, root, MPI_COMM_WORLD, r); }));
  }
  void all_gather(const Tensor& out, const Tensor& in) override {
    check("all_gather", in, false);
    check("all_gather", out, false);
    if (out.dtype() != in.dtype() || out.numel() != in.numel() * size()) {
      throw ShapeError("mpi all_gather: out " + shape_text(out) + " must hold " + std::to_string(size()) +
                       " x " + shape_text(in));
    }
    const int n = count(in);
    finish(submit("all_gather", out.nbytes(), [&in, &out, n](MPI_Request* r) {
      return MPI_Iallgather(in.raw(), n, MPI_BYTE, out.raw(), n, MPI_BYTE, MPI_COMM_WORLD, r);
    }));
  }
  void reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op) override {
    check("reduce_scatter", in, true);
    check("reduce_scatter", out, true);
    if (in.numel() != out.numel() * size()) {
      throw ShapeError("mpi reduce_scatter: in " + shape_text(in) + " must hold " + std::to_string(size()) +
                       " x out " + shape_text(out));
    }
    count(in);
    finish(submit("reduce_scatter", in.nbytes(), [&in, &out](MPI_Request* r) {
      return MPI_Ireduce_scatter_block(in.raw(), out.raw(), static_cast<int>(out.numel()), MPI_FLOAT, MPI_SUM,
                                       MPI_COMM_WORLD, r);
    }));
    if (op == ReduceOp::kMean) ops::scale(out, out, 1.0f / static_cast<float>(size()));
  }
  void barrier() override {
    finish(submit("barrier", 0, [](MPI_Request* r) { return MPI_Ibarrier(MPI_COMM_WORLD, r); }));
  }

 private:
  // One collective for the communication thread: `start` begins it non-blocking.
  struct Job {
    const char* op = "";
    std::size_t bytes = 0;
    std::function<int(MPI_Request*)> start;
    MPI_Request request = MPI_REQUEST_NULL;
    bool done = false;
    std::exception_ptr error;
  };

  struct MpiWork final : Work {
    MpiWork(MpiGroup* g, Tensor t, ReduceOp r) : group(g), tensor(std::move(t)), reduce(r) {}
    // A Work dropped unwaited still lets its collective finish: MPI writes into `tensor`.
    ~MpiWork() override {
      if (job && !waited) {
        try {
          group->finish(job);
        } catch (const std::exception&) {
          // The failure is the job's to report, and the job is broken already.
        }
      }
    }
    void wait() override {
      if (waited) return;
      waited = true;
      group->finish(job);
      if (reduce == ReduceOp::kMean) ops::scale(tensor, tensor, 1.0f / static_cast<float>(group->size()));
    }
    MpiGroup* group;
    Tensor tensor;  // kept alive while MPI writes into it
    ReduceOp reduce;
    std::shared_ptr<Job> job;
    bool waited = false;
  };

  std::shared_ptr<Job> submit(const char* op, std::size_t bytes, std::function<int(MPI_Request*)> start) {
    auto job = std::make_shared<Job>();
    job->op = op;
    job->bytes = bytes;
    job->start = std::move(start);
    if (!worker_.joinable()) {
      try {
        begin(*job);
      } catch (...) {
        job->error = std::current_exception();
        job->done = true;
      }
      return job;
    }
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(job);
    }
    wake_.notify_all();
    return job;
  }

  // Waits for `job` and rethrows its failure on the caller's thread.
  void finish(const std::shared_ptr<Job>& job) {
    if (!worker_.joinable()) {
      if (!job->done) {
        job->done = true;
        try {
          wait(job->request, job->op, job->bytes);
        } catch (...) {
          job->error = std::current_exception();
        }
      }
    } else {
      std::unique_lock lock(mutex_);
      done_.wait(lock, [&] { return job->done; });
    }
    if (job->error) std::rethrow_exception(job->error);
  }

  void begin(Job& job) {
    // After one failure every later collective would be out of step with the peers.
    if (detail::broken()) fail(job.op, "not started: an earlier collective failed");
    check_code(job.op, job.start(&job.request));
  }

  void serve() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = queue_.front();
        queue_.pop_front();
      }
      try {
        begin(*job);
        wait(job->request, job->op, job->bytes);
      } catch (...) {
        job->error = std::current_exception();
      }
      {
        std::lock_guard lock(mutex_);
        job->done = true;
      }
      done_.notify_all();
    }
  }

  static std::string shape_text(const Tensor& t) {
    return t.shape().str() + " " + dtype_name(t.dtype());
  }
  int count(const Tensor& t) const {
    if (t.nbytes() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
      throw ValueError("mpi: a collective of " + std::to_string(t.nbytes()) + " bytes is over MPI's 2 GiB count");
    }
    return static_cast<int>(t.nbytes());
  }
  void check_code(const char* op, int code) const {
    if (code != MPI_SUCCESS) {
      detail::mark_broken();
      fail(op, "failed: " + mpi_error(code));
    }
  }
  // Polls rather than blocking in MPI_Wait: MPI's own wait has no deadline.
  void wait(MPI_Request& request, const char* op, std::size_t bytes) const {
    const double start_time = gpudl::detail::seconds_now();
    for (int polls = 0;; ++polls) {
      int done = 0;
      check_code(op, MPI_Test(&request, &done, MPI_STATUS_IGNORE));
      if (done != 0) return;
      // Spin for 200 us (a small collective completes in microseconds, and a sleep costs a
      // scheduler round trip), then sleep between polls: a rank waiting for a slow peer leaves
      // the cores to it and to its own computation.
      if (polls % 64 == 63 && gpudl::detail::seconds_now() - start_time > 2e-4) {
        const timespec pause{0, 20'000};
        nanosleep(&pause, nullptr);
        if (gpudl::detail::seconds_now() - start_time > timeout()) {
          detail::mark_broken();
          fail(op, "of " + std::to_string(bytes) + " bytes timed out after " + format_number(timeout()) +
                       " s waiting for " + peers() + " (died, hangs, or is in another collective)");
        }
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  std::thread worker_;
};

#endif  // GPUDL_HAVE_MPI

struct World {
  bool started = false;
  bool mpi = false;  // this process called MPI_Init
  bool serialized = false;  // MPI may be called from any one thread at a time
  int rank = 0, size = 1, local_rank = 0;
  std::unique_ptr<ProcessGroup> cpu;
  std::map<int, std::unique_ptr<ProcessGroup>> cuda;  // by device index
};

std::mutex g_world_mutex;

// Never destroyed: NCCL communicators and MPI must outlive every static that could still use
// them, and the process is ending anyway when it would be.
World& world_state() {
  static World* world = new World;
  return *world;
}

#if GPUDL_HAVE_MPI
// At a normal exit every rank finalises MPI together. A rank leaving after a failed collective,
// or whose peers do not arrive within the timeout, ends the job instead: MPI_Finalize would
// wait for them forever.
void finish_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized != 0) return;
  if (g_broken) MPI_Abort(MPI_COMM_WORLD, 1);
  MPI_Request r;
  if (MPI_Ibarrier(MPI_COMM_WORLD, &r) != MPI_SUCCESS) MPI_Abort(MPI_COMM_WORLD, 1);
  const double start = gpudl::detail::seconds_now();
  for (;;) {
    int done = 0;
    MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    if (done != 0) break;
    if (gpudl::detail::seconds_now() - start > default_timeout()) {
      std::fprintf(stderr, "rank %d: the other ranks did not reach the end of the program within %s s; ending the job\n",
                   world_state().rank, format_number(default_timeout()).c_str());
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    const timespec pause{0, 200'000};
    nanosleep(&pause, nullptr);
  }
  MPI_Finalize();
}
#endif

World& start_world() {
  std::lock_guard lock(g_world_mutex);
  World& w = world_state();
  if (w.started) return w;
  const LaunchInfo info = launch_info();
  if (info.size > 1) {
#if GPUDL_HAVE_MPI
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized == 0) {
      int provided = 0;
      const int code = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
      if (code != MPI_SUCCESS) throw DistError("rank " + std::to_string(info.rank) + ": MPI_Init failed: " + mpi_error(code));
      w.mpi = true;
      w.serialized = provided >= MPI_THREAD_SERIALIZED;
      std::atexit(finish_mpi);
    } else {
      int provided = 0;
      MPI_Query_thread(&provided);
      w.serialized = provided >= MPI_THREAD_SERIALIZED;
    }
    // Errors come back as codes, so the message can name the rank and the operation.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w.size);
    w.local_rank = info.local_rank;
#else
    throw DistError("started as rank " + std::to_string(info.rank) + " of " + std::to_string(info.size) +
                    " processes, but this libgpudl was built without MPI (install libopenmpi-dev and rebuild)");
#endif
  }
  w.started = true;
  return w;
}

std::unique_ptr<ProcessGroup> make_cpu_group(const World& w, double timeout) {
#if GPUDL_HAVE_MPI
  // A communication thread needs a core of its own to overlap anything: with fewer than two
  // hardware threads per rank on this machine it would only take time from the computation.
  // GPUDL_MPI_THREAD=1 or 0 decides instead.
  const unsigned hw = std::thread::hardware_concurrency();
  bool threaded = hw >= 2u * static_cast<unsigned>(std::max(launch_env().local_size, 1));
  if (const char* v = std::getenv("GPUDL_MPI_THREAD"); v != nullptr && *v != '\0') threaded = std::string(v) != "0";
  // An MPI that only takes calls from the thread that started it keeps them there.
  threaded = threaded && w.serialized;
  if (w.size > 1) return std::make_unique<MpiGroup>(w.rank, w.size, timeout, threaded);
#endif
  return std::make_unique<SingleGroup>(Device::cpu(), timeout);
}

}  // namespace

ProcessGroup& group(Device device) {
  World& w = start_world();
  std::lock_guard lock(g_world_mutex);
  const double timeout = default_timeout();
  if (device.is_cpu()) {
    if (!w.cpu) w.cpu = make_cpu_group(w, timeout);
    return *w.cpu;
  }
  auto& slot = w.cuda[device.index()];
  if (!slot) {
    if (w.size == 1 && !built_with_nccl()) {
      slot = std::make_unique<SingleGroup>(device, timeout);
    } else {
      // NCCL refuses two ranks on one GPU; say so in our terms before it does in its own.
      const LaunchEnv env = launch_env();
      if (w.size > 1 && env.local_size > Device::cuda_device_count()) {
        throw DistError("rank " + std::to_string(w.rank) + ": " + std::to_string(env.local_size) +
                        " ranks on this machine share " + std::to_string(Device::cuda_device_count()) +
                        " GPU(s); NCCL needs one GPU per rank (start at most that many processes per machine)");
      }
      // The id travels as bytes over the CPU group, in turn with its other collectives.
      if (!w.cpu) w.cpu = make_cpu_group(w, timeout);
      ProcessGroup& cpu = *w.cpu;
      detail::BroadcastBytes share = [&cpu](void* bytes, std::size_t count) {
        if (cpu.size() == 1) return;
        Tensor t = Tensor::empty({static_cast<std::int64_t>(count)}, DType::kU8);
        std::memcpy(t.raw(), bytes, count);
        cpu.broadcast(t, 0);
        std::memcpy(bytes, t.raw(), count);
      };
      slot = detail::make_nccl_group(device, w.rank, w.size, timeout, share);
      if (!slot) {
        throw DistError("rank " + std::to_string(w.rank) + ": collectives on " + device.str() +
                        " need NCCL, and this libgpudl was built without it");
      }
    }
  }
  return *slot;
}

int rank() { return start_world().rank; }
int world_size() { return start_world().size; }
int local_rank() { return start_world().local_rank; }
bool is_distributed() { return world_size() > 1; }

void abort_job(int code, const std::string& message) {
  // Never starts MPI: a process that has not (a driver training on rank 0 alone) just exits,
  // and the launcher ends the others when it sees the failure.
  const World& w = world_state();
  const int r = w.started ? w.rank : launch_env().rank;
  std::fprintf(stderr, "rank %d: %s\n", r, message.c_str());
  std::fflush(stderr);
#if GPUDL_HAVE_MPI
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized != 0 && finalized == 0) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

}  // namespace gpudl::dist
