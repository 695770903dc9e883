// NCCL's collectives on CUDA tensors, on a communication stream of their own, with a watchdog
// thread that ends the job when one does not complete within the timeout.
#include "gpudl/config.h"
#include "gpudl/core/dist/detail/groups.h"

#if GPUDL_HAVE_NCCL

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "gpudl/core/detail/clock.h"
#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/core/runtime/context.h"
#include "gpudl/core/runtime/format.h"
#include "gpudl/core/runtime/stream.h"

namespace gpudl::dist::detail {

namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::kF32: return ncclFloat32;
    case DType::kF16: return ncclFloat16;
    case DType::kBF16: return ncclBfloat16;
    case DType::kI32: return ncclInt32;
    case DType::kI64: return ncclInt64;
    case DType::kU8: return ncclUint8;
  }
  return ncclUint8;
}

class NcclGroup final : public GroupBase {
 public:
  NcclGroup(Device device, int rank, int size, double timeout, const BroadcastBytes& share_id)
      : GroupBase(rank, size, device, timeout), stream_(Stream::create(device)) {
    ncclUniqueId id{};
    if (rank == 0) nccl("init", ncclGetUniqueId(&id));
    share_id(&id, sizeof id);
    cuda_api::DeviceGuard guard(device.index());
    nccl("init", ncclCommInitRank(&comm_, size, id, rank));
    watchdog_ = std::thread([this] { watch(); });
  }
  // Runs only if the process ends the group itself: the world keeps it to the end.
  ~NcclGroup() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    watchdog_.join();
    ncclCommDestroy(comm_);
  }

  std::string backend() const override { return "nccl"; }

  std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override {
    check("all_reduce", t, true);
    const cuda_api::DeviceGuard guard(device().index());  // NCCL enqueues on the current device
    cudaStream_t s = begin({t});
    nccl("all_reduce", ncclAllReduce(t.raw(), t.raw(), static_cast<std::size_t>(t.numel()), nccl_type(t.dtype()),
                                     op == ReduceOp::kMean ? ncclAvg : ncclSum, comm_, s));
    return finish("all_reduce");
  }
  void broadcast(const Tensor& t, int root) override {
    check("broadcast", t, false);
    const cuda_api::DeviceGuard guard(device().index());  // NCCL enqueues on the current device
    if (root < 0 || root >= size()) fail("broadcast", "from rank " + std::to_string(root) + " of " + std::to_string(size()));
    cudaStream_t s = begin({t});
    nccl("broadcast", ncclBroadcast(t.raw(), t.raw(), t.nbytes(), ncclUint8, root, comm_, s));
    finish("broadcast")->wait();
  }
  void all_gather(const Tensor& out, const Tensor& in) override {
    check("all_gather", in, false);
    const cuda_api::DeviceGuard guard(device().index());  // NCCL enqueues on the current device
    check("all_gather", out, false);
    if (out.dtype() != in.dtype() || out.numel() != in.numel() * size()) {
      throw ShapeError("nccl all_gather: out must hold " + std::to_string(size()) + " x in's " +
                       std::to_string(in.numel()) + " elements of one dtype");
    }
    cudaStream_t s = begin({in, out});
    nccl("all_gather", ncclAllGather(in.raw(), out.raw(), in.nbytes(), ncclUint8, comm_, s));
    finish("all_gather")->wait();
  }
  void reduce_scatter(const Tensor& out, const Tensor& in, ReduceOp op) override {
    check("reduce_scatter", in, true);
    const cuda_api::DeviceGuard guard(device().index());  // NCCL enqueues on the current device
    check("reduce_scatter", out, true);
    if (in.numel() != out.numel() * size() || in.dtype() != out.dtype()) {
      throw ShapeError("nccl reduce_scatter: in must hold " + std::to_string(size()) + " x out's " +
                       std::to_string(out.numel()) + " elements of one dtype");
    }
    cudaStream_t s = begin({in, out});
    nccl("reduce_scatter", ncclReduceScatter(in.raw(), out.raw(), static_cast<std::size_t>(out.numel()),
                                             nccl_type(in.dtype()), op == ReduceOp::kMean ? ncclAvg : ncclSum, comm_, s));
    finish("reduce_scatter")->wait();
  }
  void barrier() override {
    const cuda_api::DeviceGuard guard(device().index());  // NCCL enqueues on the current device
    if (!token_.defined()) token_ = Tensor::zeros({1}, DType::kF32, device());
    cudaStream_t s = begin({token_});
    nccl("barrier", ncclAllReduce(token_.raw(), token_.raw(), 1, ncclFloat32, ncclSum, comm_, s));
    finish("barrier");
    // A barrier holds the host, as MPI's does: wait for the stream, checking the clock.
    const double start = gpudl::detail::seconds_now();
    while (cudaStreamQuery(s) == cudaErrorNotReady) {
      if (gpudl::detail::seconds_now() - start > timeout()) {
        mark_broken();
        fail("barrier", "timed out after " + format_number(timeout()) + " s waiting for " + peers());
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

 private:
  class NcclWork final : public Work {
   public:
    NcclWork(Device device, std::shared_ptr<CUevent_st> done) : device_(device), done_(std::move(done)) {}
    // The compute stream waits for the collective; the host goes on.
    void wait() override {
      if (!done_) return;
      cuda_api::DeviceGuard guard(device_.index());
      cuda_api::stream_wait_event(Context::get(device_).compute_stream().handle(), done_.get());
      done_.reset();
    }

   private:
    Device device_;
    std::shared_ptr<CUevent_st> done_;  // shared with the watchdog's queue
  };

  void nccl(const char* op, ncclResult_t r) const {
    if (r == ncclSuccess) return;
    mark_broken();
    fail(op, std::string("failed: ") + ncclGetErrorString(r) + (r == ncclSystemError || r == ncclRemoteError
                                                                    ? " (a peer may have died; NCCL_DEBUG=WARN says more)"
                                                                    : ""));
  }

  // The communication stream starts after what the compute stream has enqueued, and the
  // tensors' memory is kept from reuse until it is done with them.
  cudaStream_t begin(std::initializer_list<Tensor> tensors) {
    cuda_api::DeviceGuard guard(device().index());
    const Stream& compute = Context::get(device()).compute_stream();
    stream_.wait(compute);
    for (const Tensor& t : tensors) {
      if (t.storage()) t.storage()->record_stream(stream_);
    }
    return static_cast<cudaStream_t>(stream_.handle());
  }

  std::unique_ptr<Work> finish(const char* op) {
    cuda_api::DeviceGuard guard(device().index());
    cudaEvent_t raw = nullptr;
    if (cudaEventCreateWithFlags(&raw, cudaEventDisableTiming) != cudaSuccess) {
      mark_broken();
      fail(op, "could not create its completion event");
    }
    std::shared_ptr<CUevent_st> done(raw, [](cudaEvent_t e) { cudaEventDestroy(e); });
    if (cudaEventRecord(raw, static_cast<cudaStream_t>(stream_.handle())) != cudaSuccess) {
      mark_broken();
      fail(op, "could not record its completion event");
    }
    {
      std::lock_guard lock(mutex_);
      pending_.push_back({done, gpudl::detail::seconds_now(), op});
    }
    wake_.notify_all();
    return std::make_unique<NcclWork>(device(), done);
  }

  // NCCL's kernels wait for their peers on the GPU, so a dead or hung peer shows up only as a
  // collective that never completes; this thread notices and ends the job, naming it.
  void watch() {
    cuda_api::DeviceGuard guard(device().index());
    std::unique_lock lock(mutex_);
    for (;;) {
      // Idle until a collective is queued; while one is pending, look again every millisecond.
      if (pending_.empty()) {
        wake_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      } else {
        wake_.wait_for(lock, std::chrono::milliseconds(1), [this] { return stopping_; });
      }
      if (stopping_) return;
      while (!pending_.empty()) {
        Pending& p = pending_.front();
        const cudaError_t q = cudaEventQuery(p.event.get());
        if (q == cudaSuccess) {
          pending_.pop_front();
          continue;
        }
        // The process is exiting and the runtime is going: nothing is late.
        if (q == cudaErrorCudartUnloading) return;
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(comm_, &async);
        const bool late = gpudl::detail::seconds_now() - p.start > timeout();
        if (q != cudaErrorNotReady || async != ncclSuccess || late) {
          std::fprintf(stderr, "rank %d: nccl %s %s; ending the job\n", rank(), p.op,
                       late ? ("timed out after " + format_number(timeout()) + " s waiting for " + peers() +
                               " (died or hangs)").c_str()
                            : (std::string("failed: ") +
                               (async != ncclSuccess ? ncclGetErrorString(async) : cudaGetErrorString(q))).c_str());
          std::fflush(stderr);
          ncclCommAbort(comm_);
          std::_Exit(1);  // the launcher sees a rank fail and ends the others
        }
        break;
      }
    }
  }

  struct Pending {
    std::shared_ptr<CUevent_st> event;
    double start;
    const char* op;
  };

  Stream stream_;
  ncclComm_t comm_ = nullptr;
  Tensor token_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> pending_;
  bool stopping_ = false;
  std::thread watchdog_;
};

}  // namespace

std::unique_ptr<ProcessGroup> make_nccl_group(Device device, int rank, int size, double timeout,
                                              const BroadcastBytes& share_id) {
  return std::make_unique<NcclGroup>(device, rank, size, timeout, share_id);
}

}  // namespace gpudl::dist::detail

#else  // no NCCL in this build

namespace gpudl::dist::detail {
std::unique_ptr<ProcessGroup> make_nccl_group(Device, int, int, double, const BroadcastBytes&) { return nullptr; }
}  // namespace gpudl::dist::detail

#endif
