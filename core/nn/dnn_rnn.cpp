// The nn facade for cuDNN's RNN API: checks, the weight-space copies, and the three cuDNN calls.
#include "gpudl/core/nn/dnn_rnn.h"

#include <cstdint>
#include <string>

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"

namespace gpudl::nn {

using namespace checks;

bool dnn_rnn_built() { return GPUDL_WITH_CUDA != 0; }

#if GPUDL_WITH_CUDA
namespace {

using kernels::CopySpan;
using kernels::DnnRnnShape;

void expect_shape(const Tensor& t, const Shape& want, const char* what) {
  if (t.shape() != want) {
    throw ShapeError(std::string("dnn_rnn: ") + what + " is " + t.shape().str() + ", expected " + want.str());
  }
}

Device check_all(const DnnRnnShape& s, const std::vector<const Tensor*>& weights, const Tensor& x, const Tensor& y,
                 std::initializer_list<std::pair<const Tensor*, const char*>> states) {
  const Device d = check_f32("dnn_rnn", {&x, &y});
  if (!d.is_cuda()) throw DeviceError("dnn_rnn: cuDNN's RNN runs on CUDA tensors, got " + d.str());
  expect_shape(x, Shape{s.steps, s.batch, s.input}, "x");
  expect_shape(y, Shape{s.steps, s.batch, s.directions * s.hidden}, "y");
  const Shape state{s.layers * s.directions, s.batch, s.hidden};
  for (const auto& [t, what] : states) {
    if (!t->defined()) continue;
    check_f32("dnn_rnn", {&x, t});
    expect_shape(*t, state, what);
  }
  const std::int64_t g = kernels::dnn_gates(s.cell) * s.hidden;
  if (static_cast<std::int64_t>(weights.size()) != 4 * s.layers * s.directions) {
    throw ValueError("dnn_rnn: " + std::to_string(weights.size()) + " weight tensors for " +
                     std::to_string(s.layers * s.directions) + " layer directions, expected 4 each");
  }
  for (std::int64_t p = 0; p < s.layers * s.directions; ++p) {
    const std::int64_t in = p < s.directions ? s.input : s.directions * s.hidden;
    const Shape want[4] = {Shape{g, in}, Shape{g, s.hidden}, Shape{g}, Shape{g}};
    for (int k = 0; k < 4; ++k) {
      const Tensor& w = *weights[static_cast<std::size_t>(4 * p + k)];
      check_f32("dnn_rnn", {&x, &w});
      expect_shape(w, want[k], "a weight");
    }
  }
  return d;
}

// The copies between the PyTorch-shaped tensors and the packed space `space`: to the space when
// `to_space`, else out of it (into `tensors`, adding).
std::vector<CopySpan> spans(const DnnRnnShape& s, const kernels::DnnRnnLayout& layout,
                            const std::vector<const Tensor*>& tensors, float* space, bool to_space) {
  const std::int64_t gates = kernels::dnn_gates(s.cell), h = s.hidden;
  std::vector<CopySpan> out;
  for (std::int64_t p = 0; p < s.layers * s.directions; ++p) {
    const std::int64_t in = p < s.directions ? s.input : s.directions * s.hidden;
    for (std::int64_t k = 0; k < 2 * gates; ++k) {
      const bool input_side = k < gates;
      const std::int64_t gate = input_side ? k : k - gates, width = input_side ? in : h;
      float* matrix = tensors[static_cast<std::size_t>(4 * p + (input_side ? 0 : 1))]->data<float>() + gate * h * width;
      float* bias = tensors[static_cast<std::size_t>(4 * p + (input_side ? 2 : 3))]->data<float>() + gate * h;
      float* m_space = space + layout.matrix[static_cast<std::size_t>(p * 2 * gates + k)];
      float* b_space = space + layout.bias[static_cast<std::size_t>(p * 2 * gates + k)];
      if (to_space) {
        out.push_back({matrix, m_space, h * width});
        out.push_back({bias, b_space, h});
      } else {
        out.push_back({m_space, matrix, h * width});
        out.push_back({b_space, bias, h});
      }
    }
  }
  return out;
}

// `t` when it is a u8 tensor of `bytes` on `d`, else a new one.
Tensor reuse_bytes(const Tensor& t, std::size_t bytes, Device d) {
  const auto n = static_cast<std::int64_t>(bytes);
  if (t.defined() && t.numel() == n && t.device() == d) return t;
  return Tensor::empty(Shape{n}, DType::kU8, d);
}

}  // namespace

void dnn_rnn_forward(DnnRnnState& state, const DnnRnnShape& s, bool training, const std::vector<const Tensor*>& weights,
                     const Tensor& x, const Tensor& y, const Tensor& h0, const Tensor& hy, const Tensor& c0,
                     const Tensor& cy) {
  const bool lstm = s.cell == kernels::DnnCell::kLstm;
  const Device d = check_all(s, weights, x, y, {{&h0, "h0"}, {&hy, "hy"}, {&c0, "c0"}, {&cy, "cy"}});
  if (!hy.defined() || lstm != cy.defined() || (!lstm && c0.defined())) {
    throw ValueError("dnn_rnn: hy is needed, and c0 and cy for the LSTM alone");
  }
  const cuda_api::DeviceGuard guard(detail::launch_device(d));
  const kernels::Exec exec = detail::launch_context(d, {.dnn = true});
  const kernels::DnnRnnSizes sizes = kernels::cuda::dnn_rnn_sizes(s, training, exec);
  const kernels::DnnRnnLayout layout = kernels::cuda::dnn_rnn_layout(s, exec);
  if (!(state.shape == s) || !state.lengths.defined() || state.lengths.device() != d) {
    state.lengths = Tensor::from_vector(
        std::vector<std::int32_t>(static_cast<std::size_t>(s.batch), static_cast<std::int32_t>(s.steps)),
        Shape{s.batch}, d);
  }
  state.shape = s;
  state.weights = reuse_bytes(state.weights, sizes.weight_space, d);
  state.reserve = training ? reuse_bytes(state.reserve, sizes.reserve_space, d) : Tensor();
  auto* space = reinterpret_cast<float*>(state.weights.data<std::uint8_t>());
  const std::vector<CopySpan> in = spans(s, layout, weights, space, true);
  kernels::cuda::copy_spans(in.data(), static_cast<kernels::index_t>(in.size()), false, exec);
  kernels::cuda::dnn_rnn_forward(s, training, state.lengths.data<std::int32_t>(), x.data<float>(), y.data<float>(),
                                 data_or_null(h0), hy.data<float>(), data_or_null(c0), data_or_null(cy), space,
                                 training && sizes.reserve_space > 0 ? state.reserve.data<std::uint8_t>() : nullptr,
                                 exec);
}

void dnn_rnn_backward(const DnnRnnState& state, const std::vector<const Tensor*>& grads, const Tensor& x,
                      const Tensor& y, const Tensor& dy, const Tensor& h0, const Tensor& c0, const Tensor& dx,
                      const Tensor& dh0, const Tensor& dc0) {
  const DnnRnnShape& s = state.shape;
  const bool lstm = s.cell == kernels::DnnCell::kLstm;
  const Device d = check_all(s, grads, x, y, {{&h0, "h0"}, {&c0, "c0"}, {&dh0, "dh0"}, {&dc0, "dc0"}});
  check_f32("dnn_rnn", {&x, &dy, &dx});
  expect_shape(dy, y.shape(), "dy");
  expect_shape(dx, x.shape(), "dx");
  if (!state.weights.defined() || !dh0.defined() || lstm != dc0.defined()) {
    throw ValueError("dnn_rnn: backward needs a training forward's state, dh0, and dc0 for the LSTM alone");
  }
  const cuda_api::DeviceGuard guard(detail::launch_device(d));
  const kernels::Exec exec = detail::launch_context(d, {.dnn = true});
  const kernels::DnnRnnLayout layout = kernels::cuda::dnn_rnn_layout(s, exec);
  void* reserve = state.reserve.defined() && state.reserve.numel() > 0 ? state.reserve.data<std::uint8_t>() : nullptr;
  const void* space = state.weights.data<std::uint8_t>();
  kernels::cuda::dnn_rnn_backward_data(s, state.lengths.data<std::int32_t>(), y.data<float>(), dy.data<float>(),
                                       dx.data<float>(), data_or_null(h0), dh0.data<float>(), data_or_null(c0),
                                       data_or_null(dc0), space, reserve, exec);
  const Tensor dspace = Tensor::zeros(state.weights.shape(), DType::kU8, d);
  kernels::cuda::dnn_rnn_backward_weights(s, state.lengths.data<std::int32_t>(), x.data<float>(), data_or_null(h0),
                                          y.data<float>(), dspace.data<std::uint8_t>(), reserve, exec);
  const std::vector<CopySpan> out =
      spans(s, layout, grads, reinterpret_cast<float*>(dspace.data<std::uint8_t>()), false);
  kernels::cuda::copy_spans(out.data(), static_cast<kernels::index_t>(out.size()), true, exec);
}
#else
void dnn_rnn_forward(DnnRnnState&, const kernels::DnnRnnShape&, bool, const std::vector<const Tensor*>&, const Tensor&,
                     const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  throw DeviceError("dnn_rnn: cuDNN's RNN needs a libgpudl built with CUDA");
}
void dnn_rnn_backward(const DnnRnnState&, const std::vector<const Tensor*>&, const Tensor&, const Tensor&,
                      const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  throw DeviceError("dnn_rnn: cuDNN's RNN needs a libgpudl built with CUDA");
}
#endif

}  // namespace gpudl::nn
