// Per-device contexts, created lazily and kept until the process exits.
#include "gpudl/core/runtime/context.h"

#include <array>
#include <atomic>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/core/detail/env_flag.h"
#include "gpudl/kernels/error.h"

namespace gpudl {

namespace {
detail::EnvFlag& deterministic_flag() {
  static detail::EnvFlag flag("GPUDL_DETERMINISTIC");
  return flag;
}

// The device's pool lent to kernels through kernels::Exec (cuDNN's algorithm search; the CPU
// twins' FP32 copies of bf16/f16 operands), so that their scratch memory is counted, cached and
// released like every other allocation.
class PoolScratch final : public kernels::ScratchAllocator {
 public:
  explicit PoolScratch(MemoryPool* pool) : pool_(pool) {}
  void* allocate(std::size_t bytes, void* stream) override { return pool_->allocate(bytes, stream); }
  void deallocate(void* ptr) noexcept override {
    try {
      pool_->deallocate(ptr);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "gpudl: warning: returning kernel scratch memory: %s\n", e.what());
    }
  }
  void release_cached() noexcept override {
    try {
      pool_->release_cached();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "gpudl: warning: releasing cached device memory: %s\n", e.what());
    }
  }

 private:
  MemoryPool* pool_;
};

}  // namespace

void set_deterministic(bool on) { deterministic_flag().set(on); }
bool deterministic() { return deterministic_flag().get(); }

namespace {

// More CUDA devices than one process can see in practice; a larger index is a clear error.
constexpr int kMaxCudaDevices = 64;

// Every kernel launch looks its context up, from any thread: after a context exists that is
// one atomic load, and only creation takes the lock. Contexts are never destroyed before exit,
// so references handed out stay valid.
struct ContextRegistry {
  std::atomic<Context*> cpu{nullptr};
  std::array<std::atomic<Context*>, kMaxCudaDevices> cuda{};
  std::mutex create_mutex;
  std::vector<std::unique_ptr<Context>> owned;
};

}  // namespace

Context& Context::get(Device device) {
  static ContextRegistry registry;
  if (device.is_cuda() && (device.index() < 0 || device.index() >= kMaxCudaDevices)) {
    throw DeviceError("CUDA device " + std::to_string(device.index()) + " is beyond the " +
                      std::to_string(kMaxCudaDevices) + " devices libgpudl supports in one process");
  }
  std::atomic<Context*>& slot = device.is_cpu() ? registry.cpu : registry.cuda[static_cast<std::size_t>(device.index())];
  if (Context* ctx = slot.load(std::memory_order_acquire)) return *ctx;
  std::lock_guard lock(registry.create_mutex);
  if (Context* ctx = slot.load(std::memory_order_relaxed)) return *ctx;
  if (device.is_cuda()) device = Device::cuda(device.index());  // validates, with a clear error
  std::unique_ptr<Context> created(new Context(device));
  Context* ctx = created.get();
  registry.owned.push_back(std::move(created));
  slot.store(ctx, std::memory_order_release);
  return *ctx;
}

Context::Context(Device device) : device_(device) {
  compute_ = Stream::create(device);
  copy_ = Stream::create(device);
  pool_ = std::make_shared<MemoryPool>(device.is_cuda() ? make_cuda_device_upstream(device.index())
                                                        : make_host_upstream());
  scratch_ = std::make_unique<PoolScratch>(pool_.get());
}

Context::~Context() {
  if (workspace_ != nullptr) pool_->deallocate(workspace_);
  if (cublas_ == nullptr && cudnn_ == nullptr) return;
  // The handles belong to this device. At exit the runtime may already be gone and refuse the
  // switch; the handles are destroyed regardless, as they always were.
  std::optional<cuda_api::DeviceGuard> guard;
  try {
    guard.emplace(device_.index());
  } catch (const std::exception&) {
  }
  if (cublas_ != nullptr) cuda_api::cublas_destroy(cublas_);
  if (cudnn_ != nullptr) cuda_api::cudnn_destroy(cudnn_);
}

std::shared_ptr<MemoryPool> Context::pinned_pool() {
  static std::shared_ptr<MemoryPool> pool = std::make_shared<MemoryPool>(make_pinned_host_upstream());
  return pool;
}

void* Context::cublas() {
  if (device_.is_cpu()) return nullptr;
  std::call_once(cublas_once_, [this] {
    // A handle belongs to the device current at its creation.
    const cuda_api::DeviceGuard guard(device_.index());
    cublas_ = cuda_api::cublas_create(compute_.handle());
  });
  return cublas_;
}

void* Context::cudnn() {
  if (device_.is_cpu()) return nullptr;
  std::call_once(cudnn_once_, [this] {
    const cuda_api::DeviceGuard guard(device_.index());
    cudnn_ = cuda_api::cudnn_create(compute_.handle());
  });
  return cudnn_;
}

namespace {
// Kernels launch on the current device, so a launch context is only usable with its device
// current. Setting it only when it differs keeps the common single-GPU launch free of it.
void make_current(Device device) {
  if (device.is_cuda() && cuda_api::current_device() != device.index()) cuda_api::set_device(device.index());
}
}  // namespace

kernels::Exec Context::exec(bool with_blas, bool with_dnn) {
  kernels::Exec exec{compute_.handle(), with_blas ? cublas() : nullptr, with_dnn ? cudnn() : nullptr,
                     deterministic(), scratch_.get()};
  make_current(device_);
  return exec;
}

kernels::Exec Context::copy_exec() {
  make_current(device_);
  return kernels::Exec{copy_.handle(), nullptr, nullptr, deterministic(), scratch_.get()};
}

void* Context::workspace(std::size_t bytes) {
  std::lock_guard lock(workspace_mutex_);
  if (bytes > workspace_bytes_) {
    // Freed on the compute stream and reallocated on it: stream order keeps earlier users safe.
    if (workspace_ != nullptr) pool_->deallocate(workspace_);
    workspace_ = nullptr;
    workspace_bytes_ = 0;
    workspace_ = pool_->allocate(bytes, compute_.handle());
    workspace_bytes_ = bytes;
  }
  return workspace_;
}

void Context::synchronize() const {
  compute_.synchronize();
  copy_.synchronize();
}

}  // namespace gpudl
