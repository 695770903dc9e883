// Per-device contexts, created lazily and kept until the process exits.
#include "gpudl/core/runtime/context.h"

#include <array>
#include <cstdio>
#include <exception>
#include <map>

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

Context& Context::get(Device device) {
  static std::mutex mutex;
  // Contexts are never destroyed before exit, so references handed out stay valid.
  static std::map<std::pair<int, int>, std::unique_ptr<Context>> contexts;
  std::lock_guard lock(mutex);
  const auto key = std::make_pair(static_cast<int>(device.kind()), device.index());
  auto it = contexts.find(key);
  if (it == contexts.end()) {
    if (device.is_cuda()) device = Device::cuda(device.index());  // validates, with a clear error
    it = contexts.emplace(key, std::unique_ptr<Context>(new Context(device))).first;
  }
  return *it->second;
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
    cuda_api::set_device(device_.index());
    cublas_ = cuda_api::cublas_create(compute_.handle());
  });
  return cublas_;
}

void* Context::cudnn() {
  if (device_.is_cpu()) return nullptr;
  std::call_once(cudnn_once_, [this] {
    cuda_api::set_device(device_.index());
    cudnn_ = cuda_api::cudnn_create(compute_.handle());
  });
  return cudnn_;
}

kernels::Exec Context::exec(bool with_blas, bool with_dnn) {
  if (device_.is_cuda()) cuda_api::set_device(device_.index());
  return kernels::Exec{compute_.handle(), with_blas ? cublas() : nullptr, with_dnn ? cudnn() : nullptr,
                       deterministic(), scratch_.get()};
}

kernels::Exec Context::copy_exec() {
  if (device_.is_cuda()) cuda_api::set_device(device_.index());
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
