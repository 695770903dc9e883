// cuDNN's RNN API (v8) over whole recurrent stacks, and the batched copies that move PyTorch-shaped
// weights into cuDNN's packed weight space and the gradients back out.
#include <cudnn.h>

#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "gpudl/kernels/cuda/launch.cuh"
#include "gpudl/kernels/dnn_rnn.h"

namespace gpudl::kernels::cuda {
namespace {

std::string describe(const DnnRnnShape& s) {
  const char* cell = s.cell == DnnCell::kLstm ? "LSTM" : s.cell == DnnCell::kGru ? "GRU" : "RNN";
  return std::string(cell) + " input " + std::to_string(s.input) + ", hidden " + std::to_string(s.hidden) + ", " +
         std::to_string(s.layers) + " layer(s) x " + std::to_string(s.directions) + " direction(s), " +
         std::to_string(s.steps) + " steps of batch " + std::to_string(s.batch);
}

// Throws CudaError (OutOfMemoryError for an allocation failure) naming the call and the stack.
void check(cudnnStatus_t status, const char* call, const DnnRnnShape& s, const char* file, int line) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  const std::string message = std::string("cuDNN call `") + call + "` failed: " + cudnnGetErrorString(status) + " at " +
                              file + ":" + std::to_string(line) + " for " + describe(s);
  if (status == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
      status == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED) {
    throw OutOfMemoryError(message);
  }
  throw CudaError(message);
}
#define GPUDL_CHECK_RNN(call, s) check((call), #call, (s), __FILE__, __LINE__)

int as_int(index_t v) { return static_cast<int>(v); }

void validate(const DnnRnnShape& s) {
  const index_t width = std::max(s.input, s.directions * s.hidden);
  const bool sizes = s.input >= 1 && s.hidden >= 1 && s.layers >= 1 && (s.directions == 1 || s.directions == 2) &&
                     s.steps >= 1 && s.batch >= 1;
  if (!sizes) throw ValueError("dnn_rnn: bad sizes: " + describe(s));
  if (s.steps > INT_MAX / s.batch || s.steps * s.batch > INT_MAX / width ||
      dnn_gates(s.cell) * s.hidden > INT_MAX / width) {
    throw ValueError("dnn_rnn: a tensor of more than 2^31 - 1 elements in " + describe(s));
  }
}

// The descriptors of one stack shape on one cuDNN handle, made once.
struct Plan {
  cudnnRNNDescriptor_t rnn = nullptr;
  cudnnDropoutDescriptor_t dropout = nullptr;
  cudnnRNNDataDescriptor_t x = nullptr, y = nullptr;
  cudnnTensorDescriptor_t h = nullptr;
  DnnRnnSizes training, inference;
  std::unique_ptr<DnnRnnLayout> layout;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (h != nullptr) cudnnDestroyTensorDescriptor(h);
    if (x != nullptr) cudnnDestroyRNNDataDescriptor(x);
    if (y != nullptr) cudnnDestroyRNNDataDescriptor(y);
    if (rnn != nullptr) cudnnDestroyRNNDescriptor(rnn);
    if (dropout != nullptr) cudnnDestroyDropoutDescriptor(dropout);
  }
};

using PlanKey = std::tuple<void*, int, index_t, index_t, index_t, index_t, index_t, index_t>;

std::mutex& plans_mutex() {
  static std::mutex m;
  return m;
}
std::map<PlanKey, std::unique_ptr<Plan>>& plans() {
  static auto* p = new std::map<PlanKey, std::unique_ptr<Plan>>();  // outlives static destruction
  return *p;
}

cudnnHandle_t handle_of(const Exec& exec, const DnnRnnShape& s) {
  if (exec.dnn == nullptr) throw ValueError("dnn_rnn: the CUDA Exec carries no cuDNN handle");
  auto handle = static_cast<cudnnHandle_t>(exec.dnn);
  GPUDL_CHECK_RNN(cudnnSetStream(handle, detail::stream_of(exec)), s);
  return handle;
}

cudnnRNNMode_t cell_mode(DnnCell c) {
  switch (c) {
    case DnnCell::kRnnTanh:
      return CUDNN_RNN_TANH;
    case DnnCell::kRnnRelu:
      return CUDNN_RNN_RELU;
    case DnnCell::kLstm:
      return CUDNN_LSTM;
    case DnnCell::kGru:
      return CUDNN_GRU;
  }
  return CUDNN_LSTM;
}

void make_data(cudnnRNNDataDescriptor_t* desc, const DnnRnnShape& s, index_t width) {
  GPUDL_CHECK_RNN(cudnnCreateRNNDataDescriptor(desc), s);
  const std::vector<int> lengths(static_cast<std::size_t>(s.batch), as_int(s.steps));
  GPUDL_CHECK_RNN(cudnnSetRNNDataDescriptor(*desc, CUDNN_DATA_FLOAT, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_UNPACKED,
                                            as_int(s.steps), as_int(s.batch), as_int(width), lengths.data(), nullptr),
                  s);
}

// The plan for `s` on exec's handle (made under the lock on first use).
Plan& plan_for(const DnnRnnShape& s, cudnnHandle_t handle) {
  validate(s);
  const PlanKey key{handle, static_cast<int>(s.cell), s.input, s.hidden, s.layers, s.directions, s.steps, s.batch};
  std::lock_guard<std::mutex> lock(plans_mutex());
  auto& all = plans();
  if (auto it = all.find(key); it != all.end()) return *it->second;
  auto plan = std::make_unique<Plan>();
  GPUDL_CHECK_RNN(cudnnCreateDropoutDescriptor(&plan->dropout), s);
  // No dropout inside cuDNN (the layer's own dropout keeps the stack off this path), so no states.
  GPUDL_CHECK_RNN(cudnnSetDropoutDescriptor(plan->dropout, handle, 0.0f, nullptr, 0, 0), s);
  GPUDL_CHECK_RNN(cudnnCreateRNNDescriptor(&plan->rnn), s);
  GPUDL_CHECK_RNN(
      cudnnSetRNNDescriptor_v8(plan->rnn, CUDNN_RNN_ALGO_STANDARD, cell_mode(s.cell), CUDNN_RNN_DOUBLE_BIAS,
                               s.directions == 2 ? CUDNN_BIDIRECTIONAL : CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT,
                               CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, CUDNN_FMA_MATH, as_int(s.input), as_int(s.hidden),
                               as_int(s.hidden), as_int(s.layers), plan->dropout, CUDNN_RNN_PADDED_IO_DISABLED),
      s);
  make_data(&plan->x, s, s.input);
  make_data(&plan->y, s, s.directions * s.hidden);
  GPUDL_CHECK_RNN(cudnnCreateTensorDescriptor(&plan->h), s);
  const int dims[3] = {as_int(s.layers * s.directions), as_int(s.batch), as_int(s.hidden)};
  const int strides[3] = {as_int(s.batch * s.hidden), as_int(s.hidden), 1};
  GPUDL_CHECK_RNN(cudnnSetTensorNdDescriptor(plan->h, CUDNN_DATA_FLOAT, 3, dims, strides), s);
  std::size_t weights = 0;
  GPUDL_CHECK_RNN(cudnnGetRNNWeightSpaceSize(handle, plan->rnn, &weights), s);
  plan->training.weight_space = plan->inference.weight_space = weights;
  GPUDL_CHECK_RNN(cudnnGetRNNTempSpaceSizes(handle, plan->rnn, CUDNN_FWD_MODE_TRAINING, plan->x,
                                            &plan->training.workspace, &plan->training.reserve_space),
                  s);
  GPUDL_CHECK_RNN(cudnnGetRNNTempSpaceSizes(handle, plan->rnn, CUDNN_FWD_MODE_INFERENCE, plan->x,
                                            &plan->inference.workspace, &plan->inference.reserve_space),
                  s);
  Plan& out = *plan;
  all.emplace(key, std::move(plan));
  return out;
}

// Memory from Exec::scratch for one call, given back once the call is enqueued (the pool keeps
// it from others until the stream has run the work).
class Scratch {
 public:
  Scratch(const Exec& exec, std::size_t bytes) : exec_(exec) {
    if (bytes == 0) return;
    if (exec.scratch == nullptr) throw ValueError("dnn_rnn: the CUDA Exec lends no scratch memory");
    ptr_ = exec.scratch->allocate(bytes, exec.stream);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (ptr_ != nullptr) exec_.scratch->deallocate(ptr_);
  }
  void* get() const { return ptr_; }

 private:
  const Exec& exec_;
  void* ptr_ = nullptr;
};

// One launch copies up to this many spans (blockIdx.y picks the span): their pointers travel as
// kernel parameters, well under the 4 KiB those may take.
constexpr int kSpansPerLaunch = 64;
struct SpanBatch {
  CopySpan span[kSpansPerLaunch];
};

__global__ void copy_spans_kernel(SpanBatch batch, bool accumulate) {
  const CopySpan s = batch.span[blockIdx.y];
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < s.count;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    s.dst[i] = accumulate ? s.dst[i] + s.src[i] : s.src[i];
  }
}

}  // namespace

DnnRnnSizes dnn_rnn_sizes(const DnnRnnShape& shape, bool training, const Exec& exec) {
  const Plan& plan = plan_for(shape, handle_of(exec, shape));
  return training ? plan.training : plan.inference;
}

DnnRnnLayout dnn_rnn_layout(const DnnRnnShape& s, const Exec& exec) {
  const cudnnHandle_t handle = handle_of(exec, s);
  Plan& plan = plan_for(s, handle);
  {
    std::lock_guard<std::mutex> lock(plans_mutex());
    if (plan.layout) return *plan.layout;
  }
  // cuDNN hands out addresses inside a weight space, so it gets a real one to measure.
  const Scratch space(exec, plan.training.weight_space);
  const auto* base = static_cast<const char*>(space.get());
  cudnnTensorDescriptor_t m = nullptr, b = nullptr;
  GPUDL_CHECK_RNN(cudnnCreateTensorDescriptor(&m), s);
  GPUDL_CHECK_RNN(cudnnCreateTensorDescriptor(&b), s);
  auto layout = std::make_unique<DnnRnnLayout>();
  const index_t gates = dnn_gates(s.cell);
  try {
    for (index_t p = 0; p < s.layers * s.directions; ++p) {
      const index_t in = p < s.directions ? s.input : s.directions * s.hidden;
      for (index_t k = 0; k < 2 * gates; ++k) {
        void* m_addr = nullptr;
        void* b_addr = nullptr;
        GPUDL_CHECK_RNN(cudnnGetRNNWeightParams(handle, plan.rnn, as_int(p), plan.training.weight_space, space.get(),
                                                as_int(k), m, &m_addr, b, &b_addr),
                        s);
        // A block of the size PyTorch's rows have, or the layout is not the one assumed here.
        auto elements = [&](cudnnTensorDescriptor_t d) {
          cudnnDataType_t type{};
          int nd = 0, dims[8] = {}, strides[8] = {};
          GPUDL_CHECK_RNN(cudnnGetTensorNdDescriptor(d, 8, &type, &nd, dims, strides), s);
          index_t n = 1;
          for (int i = 0; i < nd; ++i) n *= dims[i];
          return n;
        };
        const index_t want = s.hidden * (k < gates ? in : s.hidden);
        if (m_addr == nullptr || b_addr == nullptr || elements(m) != want || elements(b) != s.hidden) {
          throw CudaError("dnn_rnn: cuDNN's weight block " + std::to_string(k) + " of pseudo-layer " +
                          std::to_string(p) + " is not the expected " + std::to_string(want) + " weights and " +
                          std::to_string(s.hidden) + " biases for " + describe(s));
        }
        layout->matrix.push_back((static_cast<const char*>(m_addr) - base) / static_cast<index_t>(sizeof(float)));
        layout->bias.push_back((static_cast<const char*>(b_addr) - base) / static_cast<index_t>(sizeof(float)));
      }
    }
  } catch (...) {
    cudnnDestroyTensorDescriptor(m);
    cudnnDestroyTensorDescriptor(b);
    throw;
  }
  cudnnDestroyTensorDescriptor(m);
  cudnnDestroyTensorDescriptor(b);
  std::lock_guard<std::mutex> lock(plans_mutex());
  if (!plan.layout) plan.layout = std::move(layout);
  return *plan.layout;
}

void dnn_rnn_forward(const DnnRnnShape& s, bool training, const std::int32_t* seq_lengths, const float* x, float* y,
                     const float* hx, float* hy, const float* cx, float* cy, const void* weights, void* reserve,
                     const Exec& exec) {
  const cudnnHandle_t handle = handle_of(exec, s);
  const Plan& plan = plan_for(s, handle);
  const DnnRnnSizes& sizes = training ? plan.training : plan.inference;
  const Scratch work(exec, sizes.workspace);
  GPUDL_CHECK_RNN(
      cudnnRNNForward(handle, plan.rnn, training ? CUDNN_FWD_MODE_TRAINING : CUDNN_FWD_MODE_INFERENCE, seq_lengths,
                      plan.x, x, plan.y, y, plan.h, hx, hy, plan.h, cx, cy, sizes.weight_space, weights,
                      sizes.workspace, work.get(), sizes.reserve_space, sizes.reserve_space > 0 ? reserve : nullptr),
      s);
}

void dnn_rnn_backward_data(const DnnRnnShape& s, const std::int32_t* seq_lengths, const float* y, const float* dy,
                           float* dx, const float* hx, float* dhx, const float* cx, float* dcx, const void* weights,
                           void* reserve, const Exec& exec) {
  const cudnnHandle_t handle = handle_of(exec, s);
  const Plan& plan = plan_for(s, handle);
  const Scratch work(exec, plan.training.workspace);
  GPUDL_CHECK_RNN(cudnnRNNBackwardData_v8(handle, plan.rnn, seq_lengths, plan.y, y, dy, plan.x, dx, plan.h, hx, nullptr,
                                          dhx, plan.h, cx, nullptr, dcx, plan.training.weight_space, weights,
                                          plan.training.workspace, work.get(), plan.training.reserve_space, reserve),
                  s);
}

void dnn_rnn_backward_weights(const DnnRnnShape& s, const std::int32_t* seq_lengths, const float* x, const float* hx,
                              const float* y, void* dweights, void* reserve, const Exec& exec) {
  const cudnnHandle_t handle = handle_of(exec, s);
  const Plan& plan = plan_for(s, handle);
  const Scratch work(exec, plan.training.workspace);
  GPUDL_CHECK_RNN(cudnnRNNBackwardWeights_v8(handle, plan.rnn, CUDNN_WGRAD_MODE_ADD, seq_lengths, plan.x, x, plan.h, hx,
                                             plan.y, y, plan.training.weight_space, dweights, plan.training.workspace,
                                             work.get(), plan.training.reserve_space, reserve),
                  s);
}

void copy_spans(const CopySpan* spans, index_t count, bool accumulate, const Exec& exec) {
  for (index_t first = 0; first < count; first += kSpansPerLaunch) {
    const index_t n = std::min<index_t>(kSpansPerLaunch, count - first);
    SpanBatch batch{};
    index_t longest = 0;
    for (index_t i = 0; i < n; ++i) {
      batch.span[i] = spans[first + i];
      longest = std::max(longest, spans[first + i].count);
    }
    if (longest == 0) continue;
    const dim3 grid(std::min<unsigned>(detail::grid_for(longest), 1024u), static_cast<unsigned>(n));
    copy_spans_kernel<<<grid, detail::kBlock, 0, detail::stream_of(exec)>>>(batch, accumulate);
    GPUDL_CHECK_LAUNCH();
  }
}

}  // namespace gpudl::kernels::cuda
