// The job launcher's environment (OpenMPI's mpirun, Slurm's srun, MPICH's Hydra): this
// process's rank and its place among the processes on its machine, read without MPI, so the
// CPU thread pool and the choice of GPU can follow them before anything else starts.
#pragma once

#include <cstdlib>

namespace gpudl {

struct LaunchEnv {
  int rank = 0;
  int size = 1;
  int local_rank = 0;  // among the processes on this machine: the GPU a rank drives
  int local_size = 1;
};

namespace launch_detail {
inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end != v && *end == '\0' && n >= 0 && n < (1L << 30) ? static_cast<int>(n) : fallback;
}
}  // namespace launch_detail

// Rank 0 of 1 for a process started on its own.
inline LaunchEnv launch_env() {
  struct Names {
    const char *rank, *size, *local_rank, *local_size;
  };
  constexpr Names kLaunchers[] = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
      {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
      {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"},
  };
  LaunchEnv env;
  for (const Names& n : kLaunchers) {
    const int size = launch_detail::env_int(n.size, 0);
    if (size < 1) continue;
    env.size = size;
    env.rank = launch_detail::env_int(n.rank, 0);
    env.local_rank = launch_detail::env_int(n.local_rank, env.rank);
    env.local_size = launch_detail::env_int(n.local_size, size);
    break;
  }
  return env;
}

}  // namespace gpudl
