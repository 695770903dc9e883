// Devices: the CPU or one CUDA GPU, discovery, and the choice of the best one.
#pragma once

#include <string>

namespace gpudl {

class Device {
 public:
  enum class Kind : unsigned char { kCpu, kCuda };

  // The CPU.
  constexpr Device() = default;

  static constexpr Device cpu() { return Device(); }

  // CUDA device `index`. Throws DeviceError when this build has no CUDA backend, no usable
  // GPU is present, or the index is out of range; the message says which.
  static Device cuda(int index = 0);

  // The GPU this process drives: cuda:0, or, in a job of several processes (mpirun, srun),
  // the one its local rank names (local rank modulo the GPUs). Throws DeviceError as cuda().
  static Device local();

  // local() when a usable GPU exists, else the CPU. The first call that falls back to the
  // CPU says so once on stderr, with the reason.
  static Device best();

  // Parses "cpu", "cuda" (= local()), "cuda:N" or "auto" (= best()). Throws ValueError on
  // anything else and DeviceError as cuda() does.
  static Device parse(const std::string& text);

  // How many CUDA devices can be used (0 in a CPU-only build or without a driver); never throws.
  static int cuda_device_count();

  // Why no CUDA device is usable ("" when one is); for skip messages and the fallback notice.
  static std::string cuda_unavailable_reason();

  constexpr Kind kind() const { return kind_; }
  constexpr int index() const { return index_; }
  constexpr bool is_cpu() const { return kind_ == Kind::kCpu; }
  constexpr bool is_cuda() const { return kind_ == Kind::kCuda; }

  // "cpu" or "cuda:N".
  std::string str() const;
  // The GPU's name for CUDA devices ("NVIDIA H100 80GB HBM3"), "cpu" otherwise.
  std::string name() const;

  friend constexpr bool operator==(Device a, Device b) = default;

 private:
  constexpr Device(Kind kind, int index) : kind_(kind), index_(index) {}
  Kind kind_ = Kind::kCpu;
  int index_ = 0;
};

}  // namespace gpudl
