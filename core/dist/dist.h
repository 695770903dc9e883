// gpudl::dist: the job's processes (started by mpirun or srun) and the collectives between
// them, MPI's on CPU tensors and NCCL's on CUDA tensors.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/tensor.h"
#include "gpudl/kernels/launch_env.h"

namespace gpudl::dist {

// A collective failed or timed out; what() names this rank, the operation and the cause.
class DistError : public Error {
 public:
  using Error::Error;
};

// How a reduction combines the ranks' values. kMean is the sum divided by the world size.
enum class ReduceOp { kSum, kMean };

// This process's place in the job, as its launcher's environment describes it (OpenMPI's
// mpirun, Slurm's srun, or MPICH's Hydra); rank 0 of 1 for a process started on its own. Read
// from the environment alone (no MPI call), so it is cheap and safe anywhere.
using LaunchInfo = LaunchEnv;
inline LaunchInfo launch_info() { return launch_env(); }

// Whether this libgpudl was built with MPI (and so can join a job of several processes) and
// with NCCL (collectives on CUDA tensors).
bool built_with_mpi();
bool built_with_nccl();

// A pending collective. wait() returns once its result may be used: on the CPU after the data
// has arrived; on a GPU as soon as later work on the compute stream is ordered after it (the
// host does not block). Throws DistError when the collective failed or ran out of time.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

// Collectives among every process of the job on tensors of one device kind. Every rank must
// call the same collectives in the same order with tensors of the same shape and dtype;
// tensors must be on device(). Reductions take f32 (and, on NCCL, bf16/f16); broadcast and
// all_gather take any dtype. Each collective waits at most timeout() seconds for the others
// and then throws DistError naming the rank and the operation (the peer died or hangs).
class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  Device device() const { return device_; }
  // "mpi", "nccl" or "single" (one process, no communication).
  virtual std::string backend() const = 0;
  double timeout() const { return timeout_; }

  // t <- the reduction of every rank's t, in place; the _async form returns at once.
  virtual std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) = 0;
  void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::kSum);
  // t <- root's t on every rank.
  virtual void broadcast(const Tensor& t, int root) = 0;
  // out (size() x in.numel() elements) <- every rank's `in`, rank 0's first.
  virtual void all_gather(const Tensor& out, const Tensor& in) = 0;
  // out (in.numel() / size() elements) <- the reduction of every rank's chunk rank() of `in`.
  virtual void reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op) = 0;
  // Returns once every rank has called it.
  virtual void barrier() = 0;

 protected:
  ProcessGroup(int rank, int size, Device device, double timeout)
      : rank_(rank), size_(size), device_(device), timeout_(timeout) {}
  // Throws ShapeError/ValueError/DeviceError naming `op` for tensors this group cannot take.
  void check(const char* op, const Tensor& t, bool reduction) const;
  [[noreturn]] void fail(const char* op, const std::string& why) const;
  // Who a stalled collective waits for: "rank 1" in a job of two, else "one of the other N ranks".
  std::string peers() const;

 private:
  int rank_, size_;
  Device device_;
  double timeout_;
};

// The job's group for tensors on `device`: MPI for the CPU, NCCL for a CUDA device (its
// unique id travels over MPI). The first call starts MPI when the launcher says there are
// several processes; a process started on its own gets a one-rank group with no
// communication at all. Throws DistError when the job has several processes but this build
// has no MPI (or, for a CUDA device, no NCCL).
ProcessGroup& group(Device device);

// The job as a whole (starting MPI as group() does).
int rank();
int world_size();
int local_rank();
bool is_distributed();  // world_size() > 1

// Seconds a collective waits for the other ranks: $GPUDL_DIST_TIMEOUT when set, else 300.
// Applies to groups created after the call. Throws ValueError unless seconds > 0.
void set_timeout(double seconds);
double default_timeout();

// Ends the whole job at once with `code` after printing "rank R: message" on stderr: the
// way out of an error that only some ranks saw, where the others would wait in a collective
// until their timeout. In a process on its own, prints and calls std::exit(code).
[[noreturn]] void abort_job(int code, const std::string& message);

}  // namespace gpudl::dist
