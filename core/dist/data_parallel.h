// DataParallel: one model replica per rank, kept identical by averaging gradients over the
// ranks in buckets that start while backward is still running; optionally ZeRO-1 (optimizer
// state sharded over the ranks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "gpudl/core/dist/dist.h"
#include "gpudl/core/runtime/module.h"
#include "gpudl/core/training/optim.h"

namespace gpudl::dist {

struct DataParallelOptions {
  // Gradients travel in buckets of about this many bytes (a parameter larger than it gets a
  // bucket of its own): larger buckets mean fewer collectives, smaller ones an earlier start.
  std::size_t bucket_bytes = std::size_t{25} << 20;
  // Start each bucket's all-reduce as soon as backward has produced all its gradients (off:
  // every bucket after backward, for measuring what the overlap hides).
  bool overlap = true;
  // ZeRO stage 1: each rank keeps optimizer state for its share of the parameters only. The
  // gradients are reduce-scattered, each rank updates its share, and the parameters are
  // all-gathered; the result equals plain data parallelism.
  bool zero1 = false;
};

// The wrapper for a hand-written loop (the Trainer uses it too):
//
//   dist::DataParallel dp(model, dist::group(device));  // every rank now holds rank 0's model
//   dp.shard(optimizer);                                 // only with options.zero1
//   for (...) {
//     optimizer.zero_grad();
//     loss.forward(model.forward(x), y);
//     dp.prepare(local_samples / double(global_samples));  // this rank's share of the batch
//     model.backward(loss.backward());
//     dp.synchronize();                                 // gradients averaged over the ranks
//     optimizer.step();
//     dp.after_step();                                  // ZeRO-1: parameters gathered
//   }
//
// Every rank must run the same model, so that backward reaches the buckets in one order. The
// model must outlive this object; the hook it installs on the model goes with it.
class DataParallel {
 public:
  // Broadcasts the parameters and buffers from rank 0 and installs the backward hook. Throws
  // DeviceError when the model is not on the group's device, ValueError for a zero bucket size.
  DataParallel(Module& model, ProcessGroup& group, DataParallelOptions options = {});
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  // The model's buffers (batch-norm running statistics) <- rank 0's, so that every rank
  // evaluates the same model.
  void broadcast_buffers();
  // Before each backward: this rank's gradients count `weight` times in the sum over ranks
  // (its samples / the samples of all ranks, so that the result is the gradient of the
  // global batch's mean loss; 1 / size() for equal shares). Throws ValueError unless weight
  // is finite and >= 0.
  void prepare(double weight);
  // After backward: starts the buckets not started yet, waits for all of them, and leaves
  // every parameter's gradient equal on all ranks (ZeRO-1: correct for the rank's own share).
  // Throws DistError when a collective fails or times out.
  void synchronize();

  // ZeRO-1: gives each rank a contiguous share of the parameters, balanced by size, and tells
  // `optimizer` to update and keep state for that share only. Throws ValueError when the
  // options do not ask for zero1 or the optimizer's parameters are not the model's.
  void shard(Optimizer& optimizer);
  // ZeRO-1: after optimizer.step(), every rank receives the parameters the others updated
  // (nothing without zero1).
  void after_step();
  // ZeRO-1: every rank's optimizer gets the whole state (before a checkpoint is written)...
  void gather_optimizer_state(Optimizer& optimizer);
  // ...and drops what is not its own again (after the checkpoint is written or loaded).
  void release_optimizer_state(Optimizer& optimizer);

  ProcessGroup& group() const { return group_; }
  const DataParallelOptions& options() const { return options_; }
  std::size_t bucket_count() const { return buckets_.size(); }
  // Host seconds the last synchronize() spent waiting for collectives (on a GPU: enqueueing).
  double last_wait_seconds() const { return last_wait_; }
  // The rank that updates parameter `index` of model.parameters() under ZeRO-1.
  int owner(std::size_t index) const;

 private:
  struct Bucket {
    std::vector<std::size_t> params;  // indices into params_
    std::vector<std::int64_t> offsets;
    std::int64_t numel = 0;
    Tensor flat;
    std::size_t waiting = 0;  // gradients not final yet this step
    std::unique_ptr<Work> work;
  };
  void on_backward(Module& m);
  void launch_ready();
  void launch(Bucket& b);
  void reset_step();

  Module& model_;
  ProcessGroup& group_;
  DataParallelOptions options_;
  std::vector<Parameter*> params_;
  std::unordered_map<const Parameter*, std::size_t> index_;
  std::vector<std::size_t> bucket_of_;
  std::vector<bool> ready_;
  std::vector<Bucket> buckets_;
  std::size_t next_bucket_ = 0;
  double weight_ = 1.0;
  bool prepared_ = false;
  double last_wait_ = 0.0;
  // ZeRO-1: owner_[i] is the rank of parameter i; segment_ elements per rank in the flat
  // gradient and parameter exchanges (the largest share, the others padded to it).
  std::vector<int> owner_;
  std::vector<std::int64_t> zero_offset_;  // [parameter]: where it lies in the flat exchange
  std::int64_t segment_ = 0;
  Tensor zero_grads_, zero_own_;
};

}  // namespace gpudl::dist
