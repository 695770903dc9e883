// Internal to kernels/cpu: FP32 working buffers from the context's pool (Exec::scratch).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "gpudl/kernels/common.h"

namespace gpudl::kernels::cpu {

// n floats, uninitialised: from Exec::scratch when the caller lends its pool (counted in its
// statistics and reused from call to call, where a fresh heap block of megabytes would be
// mapped and faulted in every time), else from the heap.
class FloatScratch {
 public:
  FloatScratch(const Exec& exec, index_t n) : allocator_(exec.scratch) {
    const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
    if (allocator_ != nullptr) {
      data_ = static_cast<float*>(allocator_->allocate(bytes, nullptr));
    } else {
      heap_.resize(static_cast<std::size_t>(n));
      data_ = heap_.data();
    }
  }
  ~FloatScratch() {
    if (allocator_ != nullptr && data_ != nullptr) allocator_->deallocate(data_);
  }
  FloatScratch(FloatScratch&& other) noexcept
      : allocator_(other.allocator_), heap_(std::move(other.heap_)), data_(other.data_) {
    other.data_ = nullptr;  // a moved vector keeps its buffer, so data_ stays valid either way
  }
  FloatScratch(const FloatScratch&) = delete;
  FloatScratch& operator=(const FloatScratch&) = delete;
  FloatScratch& operator=(FloatScratch&&) = delete;

  float* data() const { return data_; }

 private:
  ScratchAllocator* allocator_;
  std::vector<float> heap_;
  float* data_ = nullptr;
};

}  // namespace gpudl::kernels::cpu
