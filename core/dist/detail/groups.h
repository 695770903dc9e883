// Internal to core/dist: the process-group implementations behind dist::group().
#pragma once

#include <functional>
#include <memory>

#include "gpudl/core/dist/dist.h"

namespace gpudl::dist::detail {

// Lets a group built on another (NCCL on MPI) exchange bytes: `bytes` from rank 0 to all.
using BroadcastBytes = std::function<void(void* bytes, std::size_t count)>;

// The NCCL group of `device` (nullptr in a build without NCCL). rank 0 makes the unique id and
// `share_id` carries it to the others.
std::unique_ptr<ProcessGroup> make_nccl_group(Device device, int rank, int size, double timeout,
                                              const BroadcastBytes& share_id);

// Marks the job as broken after a failed collective: the process then leaves through
// abort_job's path at exit rather than waiting for peers that will not come.
void mark_broken();
bool broken();

// Accessor for ProcessGroup's protected constructor, for the implementations in other files.
class GroupBase : public ProcessGroup {
 protected:
  GroupBase(int rank, int size, Device device, double timeout) : ProcessGroup(rank, size, device, timeout) {}
  using ProcessGroup::check;
  using ProcessGroup::fail;
  using ProcessGroup::peers;
};

}  // namespace gpudl::dist::detail
