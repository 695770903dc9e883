// Internal to kernels/cpu: the CPU backend's own threads. OpenBLAS runs single-threaded and
// the kernels split their work here instead, with helpers that sleep between jobs: OpenBLAS's
// workers spin in sched_yield between calls, which on SMT siblings slowed the main thread's
// element-wise work by up to 2x at random (docs/performance.md).
#pragma once

#include <functional>

#include "gpudl/kernels/common.h"

namespace gpudl::kernels::cpu {

// Threads the CPU kernels use, the caller included: $GPUDL_CPU_THREADS when set (>= 1), else
// the hardware threads divided among the job's processes on this machine (mpirun), at most 16.
// The first call also makes OpenBLAS single-threaded.
int cpu_threads();

// Calls fn(begin, end) on disjoint, contiguous ranges that cover [0, n), each at least `grain`
// long (but one), on up to cpu_threads() threads; the caller runs the first range and returns
// when all are done. Runs serially when nested, when another thread holds the helpers, or
// when n < 2 grain. The first exception a range throws is rethrown here after all finish.
void parallel_for(index_t n, index_t grain, const std::function<void(index_t, index_t)>& fn);

}  // namespace gpudl::kernels::cpu
