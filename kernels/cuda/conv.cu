// CUDA convolution: cuDNN's legacy convolution API with algorithms chosen once per geometry,
// cuBLAS GEMMs for 1×1 stride-1 unpadded convolutions, own kernels for the bias; twin of
// kernels/cpu/conv.cpp.
#include <cublas_v2.h>
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "gpudl/kernels/conv.h"
#include "gpudl/kernels/dispatch.h"
#include "gpudl/kernels/cuda/launch.cuh"

namespace gpudl::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// kernels


// y[b, kk, p] += bias[kk] over y (n, k, inner).
template <class T>
__global__ void add_channel_bias_kernel(T* y, const float* bias, index_t total, index_t k, index_t inner) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    y[i] = store<T>(load(y[i]) + bias[(i / inner) % k]);
  }
}

// dbias[kk] += sum of dy[b, kk, p] over b and p, one block per channel. The summation order
// depends only on the sizes, so repeated runs agree bit for bit.
template <class T>
__global__ void channel_sum_add_kernel(float* dbias, const T* dy, index_t n, index_t k, index_t inner) {
  const index_t kk = blockIdx.x;
  float sum = 0.0f;
  for (index_t b = 0; b < n; ++b) {
    const T* plane = dy + (b * k + kk) * inner;
    for (index_t p = threadIdx.x; p < inner; p += blockDim.x) sum += load(plane[p]);
  }
  sum = detail::block_sum(sum);
  if (threadIdx.x == 0) dbias[kk] += sum;
}

// out[i] += sum over j < parts of partial[j * count + i], j in order (deterministic).
__global__ void sum_partials_kernel(float* out, const float* partial, index_t parts, index_t count) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (index_t j = 0; j < parts; ++j) sum += partial[j * count + i];
    out[i] += sum;
  }
}

// out[i] += in[i] rounded to T and widened again: a low-precision weight gradient joining the
// FP32 one, rounded as cuDNN stores it (in is FP32 or already of type T).
template <class T, class In>
__global__ void accumulate_rounded_kernel(float* out, const In* in, index_t count) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    out[i] += load(store<T>(load(in[i])));
  }
}

cudnnDataType_t dnn_type(DType t) {
  return t == DType::kBF16 ? CUDNN_DATA_BFLOAT16 : t == DType::kF16 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
}
cudaDataType_t blas_type(DType t) {
  return t == DType::kBF16 ? CUDA_R_16BF : t == DType::kF16 ? CUDA_R_16F : CUDA_R_32F;
}

// Offsets a pointer to data of type t by `elements`.
template <class P>
P* advance(P* p, index_t elements, DType t) {
  using Byte = std::conditional_t<std::is_const_v<P>, const char, char>;
  return reinterpret_cast<P*>(reinterpret_cast<Byte*>(p) + elements * static_cast<index_t>(dtype_size(t)));
}

// Where a low-precision weight gradient waits in the workspace, after cuDNN's own part.
constexpr std::size_t kAlign = 256;
std::size_t aligned(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// ---------------------------------------------------------------------------------------------
// status checks that name the geometry

// No algorithm may ask for more scratch memory than this: beyond it the fastest algorithms gain
// little, and a larger workspace competes with activations for device memory.
constexpr std::size_t kWorkspaceCap = std::size_t{256} << 20;
// Per-image partial weight gradients of 1×1 convolutions are summed in chunks of at most this.
constexpr std::size_t kPartialCap = std::size_t{32} << 20;

bool is_out_of_memory(cudnnStatus_t s) {
  return s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
         s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
}
bool is_out_of_memory(cublasStatus_t s) { return s == CUBLAS_STATUS_ALLOC_FAILED; }
bool is_out_of_memory(cudaError_t s) { return s == cudaErrorMemoryAllocation; }

// Throws OutOfMemoryError for an allocation failure, CudaError for any other failure; both
// name the call, its status, file:line and the convolution.
template <class Status>
void check_status(Status s, const char* call, const ConvGeometry& g, const char* file, int line) {
  if (kernels::detail::ok(s)) return;
  const std::string message = std::string(kernels::detail::api_name(s)) + " call `" + call +
                              "` failed: " + kernels::detail::status_text(s) + " at " + file + ":" +
                              std::to_string(line) + " for conv2d " + describe(g);
  if (is_out_of_memory(s)) throw OutOfMemoryError(message);
  throw CudaError(message);
}

#define GPUDL_CHECK_CONV(call, g) check_status((call), #call, (g), __FILE__, __LINE__)

// cuDNN's 4-d descriptors and cuBLAS take int sizes; larger tensors are refused up front.
void check_int_range(const ConvGeometry& g, const char* op) {
  const index_t cg = g.c / g.groups;
  const index_t largest = std::max({g.n * g.c * g.h * g.w, g.n * g.k * g.out_h() * g.out_w(), g.k * cg * g.r * g.s});
  if (largest > INT_MAX) {
    throw ValueError(std::string(op) + ": a tensor of more than 2^31 - 1 elements in " + describe(g));
  }
}

cudnnHandle_t dnn_of(const Exec& exec, const ConvGeometry& g, const char* op) {
  if (exec.dnn == nullptr) throw ValueError(std::string(op) + ": the CUDA Exec carries no cuDNN handle");
  auto handle = static_cast<cudnnHandle_t>(exec.dnn);
  // The handle may have last served another stream; binding is cheap and keeps the order right.
  GPUDL_CHECK_CONV(cudnnSetStream(handle, detail::stream_of(exec)), g);
  return handle;
}

cublasHandle_t blas_of(const Exec& exec, const ConvGeometry& g, const char* op) {
  if (exec.blas == nullptr) throw ValueError(std::string(op) + ": the CUDA Exec carries no cuBLAS handle");
  auto handle = static_cast<cublasHandle_t>(exec.blas);
  GPUDL_CHECK_CONV(cublasSetStream(handle, detail::stream_of(exec)), g);
  return handle;
}

void check_workspace(const ConvGeometry& g, const void* workspace, std::size_t have, std::size_t need, const char* op) {
  if (have < need || (need > 0 && workspace == nullptr)) {
    throw ValueError(std::string(op) + ": workspace of " + std::to_string(have) + " bytes, need " +
                     std::to_string(need) + " for " + describe(g));
  }
}

// ---------------------------------------------------------------------------------------------
// 1×1 convolutions through cuBLAS

// Row-major C_i = op(A_i) op(B_i) (+ beta C_i) for i < batch, as column-major C_iᵀ = op(B_i)ᵀ op(A_i)ᵀ
// (the operands swapped, no data moved). TF32 is asked for through the compute type, per call,
// rather than through the math mode of the handle that every other GEMM shares.
// A and B are of type o.dtype (tensor cores for bf16/f16, FP32 sums), C of type c_type.
void gemm_batched(cublasHandle_t handle, const ConvGeometry& g, const ConvOptions& o, Transpose ta, Transpose tb,
                  index_t m, index_t n, index_t k, const void* a, index_t lda, index_t stride_a, const void* b,
                  index_t ldb, index_t stride_b, float beta, void* c, DType c_type, index_t ldc, index_t stride_c,
                  index_t batch) {
  const float alpha = 1.0f;
  const cublasOperation_t op_a = ta == Transpose::kYes ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = tb == Transpose::kYes ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasComputeType_t compute =
      o.allow_tf32 && o.dtype == DType::kF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const cudaDataType_t ab = blas_type(o.dtype);
  for (index_t first = 0; first < batch; first += kMaxGemmBatch) {
    const index_t count = std::min(kMaxGemmBatch, batch - first);
    GPUDL_CHECK_CONV(cublasGemmStridedBatchedEx(
                         handle, op_b, op_a, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha,
                         advance(b, first * stride_b, o.dtype), ab, static_cast<int>(ldb), stride_b,
                         advance(a, first * stride_a, o.dtype), ab, static_cast<int>(lda), stride_a, &beta,
                         advance(c, first * stride_c, c_type), blas_type(c_type), static_cast<int>(ldc), stride_c,
                         static_cast<int>(count), compute, CUBLAS_GEMM_DEFAULT),
                     g);
  }
}

// Images whose partial weight gradients fit kPartialCap together (at least one).
index_t partial_images(const ConvGeometry& g) {
  const index_t per_image = g.k * (g.c / g.groups) * static_cast<index_t>(sizeof(float));
  return std::clamp<index_t>(static_cast<index_t>(kPartialCap) / per_image, 1, std::max<index_t>(g.n, 1));
}

std::size_t pointwise_workspace_bytes(const ConvGeometry& g, const ConvOptions& o) {
  const auto count = static_cast<std::size_t>(g.k * (g.c / g.groups));
  // A low-precision gradient is summed in FP32 beside the partials, then rounded once as a whole
  // before it joins dweight; one FP32 image accumulates straight into dweight.
  if (is_low_precision(o.dtype)) return (static_cast<std::size_t>(partial_images(g)) + 1) * count * sizeof(float);
  if (g.n <= 1) return 0;
  return static_cast<std::size_t>(partial_images(g)) * count * sizeof(float);
}

// y_g[b] (kg, hw) = W_g (kg, cg) · x_g[b] (cg, hw), batched over the images.
void pointwise_forward(void* y, const void* x, const void* weight, const ConvGeometry& g, const ConvOptions& o,
                       cublasHandle_t handle) {
  const index_t cg = g.c / g.groups, kg = g.k / g.groups, hw = g.h * g.w;
  const DType t = o.dtype;
  for (index_t grp = 0; grp < g.groups; ++grp) {
    gemm_batched(handle, g, o, Transpose::kNo, Transpose::kNo, kg, hw, cg, advance(weight, grp * kg * cg, t), cg, 0,
                 advance(x, grp * cg * hw, t), hw, g.c * hw, 0.0f, advance(y, grp * kg * hw, t), t, hw, g.k * hw, g.n);
  }
}

// dx_g[b] (cg, hw) = W_gᵀ (cg, kg) · dy_g[b] (kg, hw).
void pointwise_backward_data(void* dx, const void* dy, const void* weight, const ConvGeometry& g,
                             const ConvOptions& o, cublasHandle_t handle) {
  const index_t cg = g.c / g.groups, kg = g.k / g.groups, hw = g.h * g.w;
  const DType t = o.dtype;
  for (index_t grp = 0; grp < g.groups; ++grp) {
    gemm_batched(handle, g, o, Transpose::kYes, Transpose::kNo, cg, hw, kg, advance(weight, grp * kg * cg, t), cg, 0,
                 advance(dy, grp * kg * hw, t), hw, g.k * hw, 0.0f, advance(dx, grp * cg * hw, t), t, hw, g.c * hw,
                 g.n);
  }
}

// dW_g (kg, cg) += sum over b of dy_g[b] (kg, hw) · x_g[b]ᵀ (hw, cg). A GEMM cannot sum over
// the images (they are not one matrix), so each chunk of images writes per-image products to
// the workspace and a second kernel adds them up in a fixed order.
void pointwise_backward_filter(float* dweight, const void* dy, const void* x, const ConvGeometry& g,
                               const ConvOptions& o, float* partial, const Exec& exec, cublasHandle_t handle) {
  const index_t cg = g.c / g.groups, kg = g.k / g.groups, hw = g.h * g.w;
  const DType t = o.dtype;
  if (g.n == 1 && t == DType::kF32) {
    for (index_t grp = 0; grp < g.groups; ++grp) {
      gemm_batched(handle, g, o, Transpose::kNo, Transpose::kYes, kg, cg, hw, advance(dy, grp * kg * hw, t), hw, 0,
                   advance(x, grp * cg * hw, t), hw, 0, 1.0f, dweight + grp * kg * cg, DType::kF32, cg, 0, 1);
    }
    return;
  }
  const index_t chunk = partial_images(g), count = g.k * cg;
  // A low-precision gradient is summed over every chunk in FP32 first and rounded once at the end.
  float* target = dweight;
  if (is_low_precision(t)) {
    target = partial + chunk * count;
    GPUDL_CHECK_CONV(cudaMemsetAsync(target, 0, static_cast<std::size_t>(count) * sizeof(float),
                                     detail::stream_of(exec)),
                     g);
  }
  for (index_t b0 = 0; b0 < g.n; b0 += chunk) {
    const index_t images = std::min(chunk, g.n - b0);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      gemm_batched(handle, g, o, Transpose::kNo, Transpose::kYes, kg, cg, hw,
                   advance(dy, (b0 * g.k + grp * kg) * hw, t), hw, g.k * hw, advance(x, (b0 * g.c + grp * cg) * hw, t),
                   hw, g.c * hw, 0.0f, partial + grp * kg * cg, DType::kF32, cg, count, images);
    }
    sum_partials_kernel<<<detail::grid_for(count), detail::kBlock, 0, detail::stream_of(exec)>>>(target, partial,
                                                                                                 images, count);
    GPUDL_CHECK_CONV(cudaGetLastError(), g);
  }
  if (!is_low_precision(t)) return;
  kernels::detail::with_float_type(t, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    accumulate_rounded_kernel<T, float><<<detail::grid_for(count), detail::kBlock, 0, detail::stream_of(exec)>>>(
        dweight, target, count);
  });
  GPUDL_CHECK_CONV(cudaGetLastError(), g);
}

// ---------------------------------------------------------------------------------------------
// cuDNN plans: descriptors and algorithms, chosen once per geometry, options and device

// Owns the descriptors of one convolution. Each direction has its own convolution descriptor
// because each carries the math type its algorithm was chosen with.
struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t fwd = nullptr, bwd_data = nullptr, bwd_filter = nullptr;
  cudnnConvolutionFwdAlgo_t fwd_algo{};
  cudnnConvolutionBwdDataAlgo_t bwd_data_algo{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo{};
  std::size_t fwd_bytes = 0, bwd_data_bytes = 0, bwd_filter_bytes = 0;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  // Destroying a descriptor only frees host memory; a failure there cannot be acted on.
  ~Plan() {
    if (x != nullptr) cudnnDestroyTensorDescriptor(x);
    if (y != nullptr) cudnnDestroyTensorDescriptor(y);
    if (w != nullptr) cudnnDestroyFilterDescriptor(w);
    for (cudnnConvolutionDescriptor_t d : {fwd, bwd_data, bwd_filter}) {
      if (d != nullptr) cudnnDestroyConvolutionDescriptor(d);
    }
  }

  std::size_t workspace_bytes() const { return std::max({fwd_bytes, bwd_data_bytes, bwd_filter_bytes}); }
};

// TF32 is off unless asked for: CUDNN_FMA_MATH restricts cuDNN to FP32 FMA kernels, whereas
// CUDNN_DEFAULT_MATH lets it round FP32 operands to TF32 on tensor cores. bf16/f16 data is what
// the tensor cores are for: CUDNN_TENSOR_OP_MATH.
bool tensor_cores_allowed(const ConvOptions& o) { return o.allow_tf32 || is_low_precision(o.dtype); }
cudnnMathType_t requested_math(const ConvOptions& o) {
  if (is_low_precision(o.dtype)) return CUDNN_TENSOR_OP_MATH;
  return o.allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}

void make_convolution(cudnnConvolutionDescriptor_t* desc, const ConvGeometry& g, const ConvOptions& o) {
  GPUDL_CHECK_CONV(cudnnCreateConvolutionDescriptor(desc), g);
  GPUDL_CHECK_CONV(cudnnSetConvolution2dDescriptor(*desc, static_cast<int>(g.pad_h), static_cast<int>(g.pad_w),
                                                   static_cast<int>(g.stride_h), static_cast<int>(g.stride_w),
                                                   static_cast<int>(g.dilation_h), static_cast<int>(g.dilation_w),
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),  // FP32 sums
                   g);
  GPUDL_CHECK_CONV(cudnnSetConvolutionGroupCount(*desc, static_cast<int>(g.groups)), g);
  GPUDL_CHECK_CONV(cudnnSetConvolutionMathType(*desc, requested_math(o)), g);
}

// The first of cuDNN's ranked candidates that succeeded, is deterministic when that was asked
// for, keeps FP32 math unless TF32 is allowed, and needs at most `limit` bytes of workspace.
// query(algo, &bytes) returns the candidate's workspace size with `conv` set to its math type.
// False when none qualifies; *too_big then says whether some failed only for their workspace.
template <class Perf, class Algo, class Query>
bool pick(const std::vector<Perf>& candidates, int returned, cudnnConvolutionDescriptor_t conv, const ConvGeometry& g,
          const ConvOptions& o, std::size_t limit, Algo* algo, std::size_t* bytes, bool* too_big, Query query) {
  for (int i = 0; i < returned; ++i) {
    const Perf& p = candidates[static_cast<std::size_t>(i)];
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    if (o.deterministic && p.determinism != CUDNN_DETERMINISTIC) continue;
    const bool tensor_ops = p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (!tensor_cores_allowed(o) && tensor_ops) continue;
    // Under FP32 the descriptor stays on FMA math whatever the candidate reports.
    const cudnnMathType_t math = tensor_cores_allowed(o) ? p.mathType : CUDNN_FMA_MATH;
    GPUDL_CHECK_CONV(cudnnSetConvolutionMathType(conv, math), g);
    std::size_t need = 0;
    if (query(p.algo, &need) != CUDNN_STATUS_SUCCESS) continue;  // not supported with this math type
    if (need > limit) {
      *too_big = true;
      continue;
    }
    *algo = p.algo;
    *bytes = need;
    return true;
  }
  return false;
}

// Whether candidates are ranked by timing them (cudnnFind*) rather than by cuDNN's heuristics.
// GPUDL_CONV_ALGO=heuristic turns timing off, for compute-sanitizer's initcheck: timing the
// candidates was reported as uninitialised reads inside cuDNN's kernels.
bool timed_ranking(const ConvOptions& o) {
  static const bool heuristic = [] {
    const char* v = std::getenv("GPUDL_CONV_ALGO");
    const std::string s = v != nullptr ? v : "find";
    if (s != "find" && s != "heuristic") {
      throw CudaError("GPUDL_CONV_ALGO must be 'find' or 'heuristic', not '" + s + "'");
    }
    return s == "heuristic";
  }();
  return !o.deterministic && !heuristic;
}

// What conv_plan_stats() reports; plan counts are read from the cache itself.
struct SearchCounters {
  std::atomic<std::uint64_t> searches{0}, memory_limited{0}, retries{0}, scratch_allocations{0};
};

SearchCounters& search_counters() {
  static auto* counters = new SearchCounters;
  return *counters;
}

// Device memory from Exec::scratch for the length of one search.
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { reset(); }

  // Takes `bytes` (nothing for 0), asking the allocator to release its cache and trying once
  // more when the first request fails. False when the device has no room even then.
  bool acquire(ScratchAllocator* allocator, std::size_t bytes, cudaStream_t stream) {
    reset();
    if (bytes == 0) return true;
    for (int attempt = 0; attempt < 2; ++attempt) {
      try {
        ptr_ = allocator->allocate(bytes, stream);
        allocator_ = allocator;
        bytes_ = bytes;
        search_counters().scratch_allocations.fetch_add(1);
        return true;
      } catch (const OutOfMemoryError&) {
        allocator->release_cached();
      }
    }
    return false;
  }
  void reset() {
    if (ptr_ != nullptr) allocator_->deallocate(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  ScratchAllocator* allocator_ = nullptr;
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// One plan's search: cuDNN's handle, and, when candidates are to be timed, scratch tensors in
// the geometry's shapes (zeroed, so that timing never meets NaNs or denormals) from the pool
// that Exec::scratch lends. Tensor contents do not change which algorithm is fastest.
struct Search {
  Search(const ConvGeometry& geometry, const ConvOptions& options, cudaStream_t s)
      : g(geometry), o(options), stream(s) {}

  const ConvGeometry& g;
  const ConvOptions& o;
  cudaStream_t stream;
  ScratchAllocator* allocator = nullptr;  // null: rank by heuristics
  ScratchBuffer x, w, y;
  // A candidate failed or was passed over for lack of memory even after the retry, so the
  // choice may be slower than the best and must not be kept.
  bool memory_limited = false;
};

bool prepare_scratch_tensors(Search& s) {
  const ConvGeometry& g = s.g;
  const std::size_t element = dtype_size(s.o.dtype);
  auto bytes = [element](index_t n) { return static_cast<std::size_t>(n) * element; };
  const bool got = s.x.acquire(s.allocator, bytes(g.n * g.c * g.h * g.w), s.stream) &&
                   s.w.acquire(s.allocator, bytes(g.k * (g.c / g.groups) * g.r * g.s), s.stream) &&
                   s.y.acquire(s.allocator, bytes(g.n * g.k * g.out_h() * g.out_w()), s.stream);
  if (!got) {
    s.x.reset();
    s.w.reset();
    s.y.reset();
    return false;
  }
  for (const ScratchBuffer* b : {&s.x, &s.w, &s.y}) {
    GPUDL_CHECK_CONV(cudaMemsetAsync(b->get(), 0, b->bytes(), s.stream), g);
  }
  return true;
}

// Fills *algo and *bytes for one direction. Timed (when the search has scratch tensors): the
// workspace offered is what the largest admissible candidate needs, from the pool; candidates
// that fail for memory (cuDNN's own allocations, or a workspace the pool could not give) send
// the search round again once after the allocator released its cache; if they still fail, the
// search is memory-limited and picks among the rest, or by heuristics when none is left.
// Heuristic ranking otherwise. heuristic(count, &returned, perf) and find(count, &returned,
// perf, workspace, bytes) are cuDNN's two ranking calls for this direction.
template <class Perf, class Algo, class Heuristic, class Find, class Query>
void rank_and_choose(Search& s, int count, cudnnConvolutionDescriptor_t conv, const char* direction, Algo* algo,
                     std::size_t* bytes, Heuristic heuristic, Find find, Query query) {
  const ConvGeometry& g = s.g;
  const ConvOptions& o = s.o;
  std::vector<Perf> ranked(static_cast<std::size_t>(std::max(count, 1)));
  int returned = 0;
  // Heuristic ranking runs nothing, so it needs no memory; its sizes bound the workspace to offer.
  GPUDL_CHECK_CONV(heuristic(static_cast<int>(ranked.size()), &returned, ranked.data()), g);
  bool too_big = false;
  if (s.x.get() != nullptr) {
    std::size_t want = 0;
    for (int i = 0; i < returned; ++i) {
      const Perf& p = ranked[static_cast<std::size_t>(i)];
      if (p.status == CUDNN_STATUS_SUCCESS && p.memory <= kWorkspaceCap) want = std::max(want, p.memory);
    }
    std::vector<Perf> timed(ranked.size());
    int timed_count = 0;
    std::size_t offered = 0;
    bool clean = false;
    for (int attempt = 0; attempt < 2 && !clean; ++attempt) {
      if (attempt > 0) {
        s.allocator->release_cached();
        search_counters().retries.fetch_add(1);
      }
      ScratchBuffer workspace;
      // What the pool cannot give in one piece, half of it may still time most candidates.
      for (std::size_t ask = want; !workspace.acquire(s.allocator, ask, s.stream); ask /= 2) {
        if (ask < (std::size_t{1} << 20)) break;
      }
      offered = workspace.bytes();
      const cudnnStatus_t status =
          find(static_cast<int>(timed.size()), &timed_count, timed.data(), workspace.get(), workspace.bytes());
      if (is_out_of_memory(status)) {
        timed_count = 0;
        continue;
      }
      GPUDL_CHECK_CONV(status, g);
      clean = offered >= want;
      for (int i = 0; i < timed_count && clean; ++i) {
        const Perf& p = timed[static_cast<std::size_t>(i)];
        if (p.status == CUDNN_STATUS_SUCCESS) continue;
        // Candidates beyond the cap fail here on purpose, every time; they are not a shortage.
        if (is_out_of_memory(p.status) || (p.memory > offered && p.memory <= kWorkspaceCap)) {
          clean = false;
          want = std::max(want, std::min(p.memory, kWorkspaceCap));
        }
      }
    }
    if (!clean) s.memory_limited = true;
    if (pick(timed, timed_count, conv, g, o, clean ? kWorkspaceCap : offered, algo, bytes, &too_big, query)) return;
  }
  if (pick(ranked, returned, conv, g, o, kWorkspaceCap, algo, bytes, &too_big, query)) return;
  const std::string what = std::string("cuDNN has no ") + direction + " algorithm" +
                           (o.deterministic ? " (deterministic)" : "") +
                           (is_low_precision(o.dtype) ? std::string(" (") + dtype_name(o.dtype) + ")"
                                            : o.allow_tf32 ? std::string() : std::string(" (FP32 math)"));
  if (too_big) {
    throw OutOfMemoryError(what + " within the " + std::to_string(kWorkspaceCap >> 20) +
                           " MiB workspace cap for conv2d " + describe(g));
  }
  throw CudaError(what + " for conv2d " + describe(g));
}

// Descriptors and an algorithm per direction for one geometry. Candidates are ranked by timing
// each on this GPU (cudnnFind*Ex, on memory from Exec::scratch), as PyTorch's cudnn.benchmark
// does: the heuristics' first picks were up to 5x slower (the resnet's 3x3 backward-filter chose
// wgrad_alg0). Deterministic plans, and calls without Exec::scratch, keep the heuristic ranking,
// since timings vary from run to run and so would the algorithm and its rounding.
// *memory_limited tells whether a candidate went untimed for lack of memory.
std::unique_ptr<Plan> make_plan(cudnnHandle_t handle, const ConvGeometry& g, const ConvOptions& o, const Exec& exec,
                                bool* memory_limited) {
  search_counters().searches.fetch_add(1);
  auto plan = std::make_unique<Plan>();
  auto dim = [](index_t v) { return static_cast<int>(v); };
  const index_t oh = g.out_h(), ow = g.out_w();
  GPUDL_CHECK_CONV(cudnnCreateTensorDescriptor(&plan->x), g);
  GPUDL_CHECK_CONV(
      cudnnSetTensor4dDescriptor(plan->x, CUDNN_TENSOR_NCHW, dnn_type(o.dtype), dim(g.n), dim(g.c), dim(g.h), dim(g.w)),
      g);
  GPUDL_CHECK_CONV(cudnnCreateTensorDescriptor(&plan->y), g);
  GPUDL_CHECK_CONV(
      cudnnSetTensor4dDescriptor(plan->y, CUDNN_TENSOR_NCHW, dnn_type(o.dtype), dim(g.n), dim(g.k), dim(oh), dim(ow)),
      g);
  // KCRS with C the input channels of one group, as cuDNN expects for grouped convolutions.
  GPUDL_CHECK_CONV(cudnnCreateFilterDescriptor(&plan->w), g);
  GPUDL_CHECK_CONV(cudnnSetFilter4dDescriptor(plan->w, dnn_type(o.dtype), CUDNN_TENSOR_NCHW, dim(g.k),
                                              dim(g.c / g.groups), dim(g.r), dim(g.s)),
                   g);
  make_convolution(&plan->fwd, g, o);
  make_convolution(&plan->bwd_data, g, o);
  make_convolution(&plan->bwd_filter, g, o);

  // Both sides must agree on the output shape, or every index below would be off.
  int dn = 0, dk = 0, dh = 0, dw = 0;
  GPUDL_CHECK_CONV(cudnnGetConvolution2dForwardOutputDim(plan->fwd, plan->x, plan->w, &dn, &dk, &dh, &dw), g);
  if (dn != g.n || dk != g.k || dh != oh || dw != ow) {
    throw CudaError("cuDNN computes output [" + std::to_string(dn) + ", " + std::to_string(dk) + ", " +
                    std::to_string(dh) + ", " + std::to_string(dw) + "] for conv2d " + describe(g));
  }

  Search s(g, o, detail::stream_of(exec));
  if (timed_ranking(o) && exec.scratch != nullptr) {
    s.allocator = exec.scratch;
    // Without room for the scratch tensors nothing can be timed: heuristics, and not kept.
    if (!prepare_scratch_tensors(s)) s.memory_limited = true;
  }

  int count = 0;
  GPUDL_CHECK_CONV(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &count), g);
  rank_and_choose<cudnnConvolutionFwdAlgoPerf_t>(
      s, count, plan->fwd, "forward", &plan->fwd_algo, &plan->fwd_bytes,
      [&](int n, int* returned, cudnnConvolutionFwdAlgoPerf_t* perf) {
        return cudnnGetConvolutionForwardAlgorithm_v7(handle, plan->x, plan->w, plan->fwd, plan->y, n, returned, perf);
      },
      [&](int n, int* returned, cudnnConvolutionFwdAlgoPerf_t* perf, void* ws, std::size_t ws_bytes) {
        return cudnnFindConvolutionForwardAlgorithmEx(handle, plan->x, s.x.get(), plan->w, s.w.get(), plan->fwd,
                                                      plan->y, s.y.get(), n, returned, perf, ws, ws_bytes);
      },
      [&](cudnnConvolutionFwdAlgo_t a, std::size_t* b) {
        return cudnnGetConvolutionForwardWorkspaceSize(handle, plan->x, plan->w, plan->fwd, plan->y, a, b);
      });

  GPUDL_CHECK_CONV(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &count), g);
  rank_and_choose<cudnnConvolutionBwdDataAlgoPerf_t>(
      s, count, plan->bwd_data, "backward-data", &plan->bwd_data_algo, &plan->bwd_data_bytes,
      [&](int n, int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf) {
        return cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, plan->w, plan->y, plan->bwd_data, plan->x, n,
                                                           returned, perf);
      },
      [&](int n, int* returned, cudnnConvolutionBwdDataAlgoPerf_t* perf, void* ws, std::size_t ws_bytes) {
        return cudnnFindConvolutionBackwardDataAlgorithmEx(handle, plan->w, s.w.get(), plan->y, s.y.get(),
                                                           plan->bwd_data, plan->x, s.x.get(), n, returned, perf, ws,
                                                           ws_bytes);
      },
      [&](cudnnConvolutionBwdDataAlgo_t a, std::size_t* b) {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, plan->w, plan->y, plan->bwd_data, plan->x, a, b);
      });

  GPUDL_CHECK_CONV(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &count), g);
  rank_and_choose<cudnnConvolutionBwdFilterAlgoPerf_t>(
      s, count, plan->bwd_filter, "backward-filter", &plan->bwd_filter_algo, &plan->bwd_filter_bytes,
      [&](int n, int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
        return cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, plan->x, plan->y, plan->bwd_filter, plan->w, n,
                                                             returned, perf);
      },
      [&](int n, int* returned, cudnnConvolutionBwdFilterAlgoPerf_t* perf, void* ws, std::size_t ws_bytes) {
        return cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, plan->x, s.x.get(), plan->y, s.y.get(),
                                                             plan->bwd_filter, plan->w, s.w.get(), n, returned, perf,
                                                             ws, ws_bytes);
      },
      [&](cudnnConvolutionBwdFilterAlgo_t a, std::size_t* b) {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, plan->x, plan->y, plan->bwd_filter, plan->w, a,
                                                              b);
      });
  if (s.memory_limited) search_counters().memory_limited.fetch_add(1);
  *memory_limited = s.memory_limited;
  return plan;
}

using PlanKey = std::array<index_t, 18>;
using PlanPtr = std::shared_ptr<const Plan>;

// A plan made under a memory shortage: it serves the calls that follow its search (the caller
// sized its workspace by it) until the next search of its key. A shortage that lasts would
// otherwise cost a search (and a release of the pool's cache) at every step, so each search that
// is short of memory again doubles the workspace lookups it serves before the next one, up to
// kMaxProvisionalWait; the first retry comes at once.
struct Provisional {
  PlanPtr plan;
  std::uint64_t wait = 0;         // lookups to serve before searching again
  std::uint64_t next_wait = 0;    // the wait after the next search that is short of memory
};
constexpr std::uint64_t kMaxProvisionalWait = 1024;

// Plans kept for good, and provisional ones. The mutex guards the maps only: searches run
// outside it, so one thread's search never holds up another thread's convolutions.
struct PlanCache {
  std::mutex mutex;
  std::map<PlanKey, PlanPtr> plans;
  std::map<PlanKey, Provisional> provisional;
};

// Never destroyed, so no cuDNN call runs while the process exits (after cuDNN may be gone).
PlanCache& plan_cache() {
  static auto* cache = new PlanCache;
  return *cache;
}

enum class Lookup : std::uint8_t {
  kSearchUnlessKept,   // conv2d_workspace_bytes: a provisional plan whose wait is over gets a fresh search
  kUseProvisional,     // the runs: keep to the plan the workspace was sized for
};

// The plan for this geometry and the layer's options on the current device; deterministic also
// when the process is in deterministic mode (exec). A plan is kept for good only when its search
// lacked no memory; two threads may search the same key at once, and the first kept plan wins.
PlanPtr plan_for(cudnnHandle_t handle, const ConvGeometry& g, const ConvOptions& layer_options, const Exec& exec,
                 Lookup lookup) {
  ConvOptions o = layer_options;
  o.deterministic = o.deterministic || exec.deterministic;
  int device = 0;
  GPUDL_CHECK_CONV(cudaGetDevice(&device), g);
  const PlanKey key{device,      g.n,        g.c,     g.h,     g.w,          g.k,          g.r,      g.s,
                    g.stride_h,  g.stride_w, g.pad_h, g.pad_w, g.dilation_h, g.dilation_w, g.groups, o.deterministic,
                    o.allow_tf32, static_cast<index_t>(o.dtype)};
  PlanCache& cache = plan_cache();
  {
    std::lock_guard lock(cache.mutex);
    if (auto it = cache.plans.find(key); it != cache.plans.end()) return it->second;
    if (auto it = cache.provisional.find(key); it != cache.provisional.end()) {
      if (lookup == Lookup::kUseProvisional) return it->second.plan;
      if (it->second.wait > 0) {
        --it->second.wait;
        return it->second.plan;
      }
    }
  }
  bool memory_limited = false;
  PlanPtr plan = make_plan(handle, g, o, exec, &memory_limited);
  std::lock_guard lock(cache.mutex);
  if (memory_limited) {
    Provisional& p = cache.provisional[key];
    p.plan = plan;
    p.wait = p.next_wait;
    p.next_wait = std::min<std::uint64_t>(std::max<std::uint64_t>(2 * p.next_wait, 1), kMaxProvisionalWait);
    return plan;
  }
  cache.provisional.erase(key);
  return cache.plans.emplace(key, plan).first->second;
}

// y (n, channels, inner) += bias per channel; g names the convolution in messages.
void add_bias(void* y, const float* bias, index_t channels, index_t inner, const ConvGeometry& g, DType t,
              const Exec& exec) {
  const index_t total = g.n * channels * inner;
  kernels::detail::with_float_type(t, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    add_channel_bias_kernel<T><<<detail::grid_for(total), detail::kBlock, 0, detail::stream_of(exec)>>>(
        static_cast<T*>(y), bias, total, channels, inner);
  });
  GPUDL_CHECK_CONV(cudaGetLastError(), g);
}

// dbias (channels) += the sums per channel of dy (n, channels, inner).
void channel_sums(float* dbias, const void* dy, index_t channels, index_t inner, const ConvGeometry& g, DType t,
                  const Exec& exec) {
  kernels::detail::with_float_type(t, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    channel_sum_add_kernel<T><<<static_cast<unsigned>(channels), detail::kBlock, 0, detail::stream_of(exec)>>>(
        dbias, static_cast<const T*>(dy), g.n, channels, inner);
  });
  GPUDL_CHECK_CONV(cudaGetLastError(), g);
}

// Bytes after cuDNN's backward-filter workspace where a low-precision weight gradient is put
// before it is added into the FP32 dweight (cuDNN writes the filter gradient in the data's type).
std::size_t filter_gradient_bytes(const ConvGeometry& g, const ConvOptions& o) {
  if (!is_low_precision(o.dtype)) return 0;
  return aligned(static_cast<std::size_t>(g.k * (g.c / g.groups) * g.r * g.s) * dtype_size(o.dtype));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// launchers

std::size_t conv2d_workspace_bytes(const ConvGeometry& g, const ConvOptions& o, const Exec& exec) {
  validate(g);
  kernels::detail::require_floating(o.dtype, "conv2d_workspace_bytes");
  if (g.n == 0) return 0;
  check_int_range(g, "conv2d_workspace_bytes");
  if (g.is_pointwise()) return pointwise_workspace_bytes(g, o);
  const PlanPtr plan =
      plan_for(dnn_of(exec, g, "conv2d_workspace_bytes"), g, o, exec, Lookup::kSearchUnlessKept);
  // The low-precision filter gradient waits after the part cuDNN uses for that direction.
  return std::max(plan->workspace_bytes(), aligned(plan->bwd_filter_bytes) + filter_gradient_bytes(g, o));
}

void conv2d_forward(void* y, const void* x, const void* weight, const float* bias, const ConvGeometry& g,
                    const ConvOptions& o, void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  validate(g);
  kernels::detail::require_floating(o.dtype, "conv2d_forward");
  if (g.n == 0) return;
  check_int_range(g, "conv2d_forward");
  if (g.is_pointwise()) {
    pointwise_forward(y, x, weight, g, o, blas_of(exec, g, "conv2d_forward"));
  } else {
    cudnnHandle_t handle = dnn_of(exec, g, "conv2d_forward");
    const PlanPtr plan_ptr = plan_for(handle, g, o, exec, Lookup::kUseProvisional);
    const Plan& plan = *plan_ptr;
    check_workspace(g, workspace, workspace_bytes, plan.fwd_bytes, "conv2d_forward");
    // alpha and beta are floats for bf16/f16 data too (cuDNN's scaling parameters follow the
    // compute type, FP32 here).
    const float one = 1.0f, zero = 0.0f;
    GPUDL_CHECK_CONV(cudnnConvolutionForward(handle, &one, plan.x, x, plan.w, weight, plan.fwd, plan.fwd_algo,
                                             workspace, workspace_bytes, &zero, plan.y, y),
                     g);
  }
  if (bias != nullptr) add_bias(y, bias, g.k, g.out_h() * g.out_w(), g, o.dtype, exec);
}

void conv2d_backward_data(void* dx, const void* dy, const void* weight, const ConvGeometry& g, const ConvOptions& o,
                          void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  validate(g);
  kernels::detail::require_floating(o.dtype, "conv2d_backward_data");
  if (g.n == 0) return;
  check_int_range(g, "conv2d_backward_data");
  if (g.is_pointwise()) {
    pointwise_backward_data(dx, dy, weight, g, o, blas_of(exec, g, "conv2d_backward_data"));
    return;
  }
  cudnnHandle_t handle = dnn_of(exec, g, "conv2d_backward_data");
  const PlanPtr plan_ptr = plan_for(handle, g, o, exec, Lookup::kUseProvisional);
  const Plan& plan = *plan_ptr;
  check_workspace(g, workspace, workspace_bytes, plan.bwd_data_bytes, "conv2d_backward_data");
  const float one = 1.0f, zero = 0.0f;
  GPUDL_CHECK_CONV(cudnnConvolutionBackwardData(handle, &one, plan.w, weight, plan.y, dy, plan.bwd_data,
                                                plan.bwd_data_algo, workspace, workspace_bytes, &zero, plan.x, dx),
                   g);
}

void conv2d_backward_filter(float* dweight, float* dbias, const void* dy, const void* x, const ConvGeometry& g,
                            const ConvOptions& o, void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  validate(g);
  kernels::detail::require_floating(o.dtype, "conv2d_backward_filter");
  if (g.n == 0) return;
  check_int_range(g, "conv2d_backward_filter");
  if (g.is_pointwise()) {
    check_workspace(g, workspace, workspace_bytes, pointwise_workspace_bytes(g, o), "conv2d_backward_filter");
    pointwise_backward_filter(dweight, dy, x, g, o, static_cast<float*>(workspace), exec,
                              blas_of(exec, g, "conv2d_backward_filter"));
  } else {
    cudnnHandle_t handle = dnn_of(exec, g, "conv2d_backward_filter");
    const PlanPtr plan_ptr = plan_for(handle, g, o, exec, Lookup::kUseProvisional);
    const Plan& plan = *plan_ptr;
    const float one = 1.0f, zero = 0.0f;
    if (!is_low_precision(o.dtype)) {
      check_workspace(g, workspace, workspace_bytes, plan.bwd_filter_bytes, "conv2d_backward_filter");
      // beta = 1: parameter gradients accumulate, as everywhere in this library.
      GPUDL_CHECK_CONV(
          cudnnConvolutionBackwardFilter(handle, &one, plan.x, x, plan.y, dy, plan.bwd_filter, plan.bwd_filter_algo,
                                         workspace, workspace_bytes, &one, plan.w, dweight),
          g);
    } else {
      // cuDNN writes the filter gradient in the data's type: into the workspace past its own
      // part, then added (widened) into the FP32 dweight.
      const std::size_t own = aligned(plan.bwd_filter_bytes);
      check_workspace(g, workspace, workspace_bytes, own + filter_gradient_bytes(g, o), "conv2d_backward_filter");
      void* low = static_cast<char*>(workspace) + own;
      GPUDL_CHECK_CONV(
          cudnnConvolutionBackwardFilter(handle, &one, plan.x, x, plan.y, dy, plan.bwd_filter, plan.bwd_filter_algo,
                                         workspace, plan.bwd_filter_bytes, &zero, plan.w, low),
          g);
      const index_t count = g.k * (g.c / g.groups) * g.r * g.s;
      kernels::detail::with_float_type(o.dtype, "conv2d", [&](auto tag) {
        using T = decltype(tag);
        accumulate_rounded_kernel<T, T><<<detail::grid_for(count), detail::kBlock, 0, detail::stream_of(exec)>>>(
            dweight, static_cast<const T*>(low), count);
      });
      GPUDL_CHECK_CONV(cudaGetLastError(), g);
    }
  }
  if (dbias != nullptr) channel_sums(dbias, dy, g.k, g.out_h() * g.out_w(), g, o.dtype, exec);
}

// cuDNN's backward-data pass is the transposed convolution itself, with the plan of g.
void conv_transpose2d_forward(void* y, const void* x, const void* weight, const float* bias, const ConvGeometry& g,
                              const ConvOptions& o, void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  conv2d_backward_data(y, x, weight, g, o, workspace, workspace_bytes, exec);
  if (bias != nullptr && g.n > 0) add_bias(y, bias, g.c, g.h * g.w, g, o.dtype, exec);
}

void conv_transpose2d_backward_bias(float* dbias, const void* dy, const ConvGeometry& g, const ConvOptions& o,
                                    const Exec& exec) {
  validate(g);
  kernels::detail::require_floating(o.dtype, "conv_transpose2d_backward_bias");
  if (g.n == 0) return;
  check_int_range(g, "conv_transpose2d_backward_bias");
  channel_sums(dbias, dy, g.c, g.h * g.w, g, o.dtype, exec);
}

ConvPlanStats conv_plan_stats() {
  ConvPlanStats stats;
  SearchCounters& counters = search_counters();
  stats.searches = counters.searches.load();
  stats.memory_limited_searches = counters.memory_limited.load();
  stats.memory_retries = counters.retries.load();
  stats.scratch_allocations = counters.scratch_allocations.load();
  PlanCache& cache = plan_cache();
  std::lock_guard lock(cache.mutex);
  stats.kept_plans = cache.plans.size();
  stats.provisional_plans = cache.provisional.size();
  return stats;
}

}  // namespace gpudl::kernels::cuda
