// The nn facade for recurrent cells, embeddings, time reversal: checks, then the CPU or CUDA twin.
#include "gpudl/core/nn/rnn.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"
#include "gpudl/kernels/rnn.h"

namespace gpudl::nn {

using namespace checks;
using detail::twin;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

namespace {
// (batch, width) of a cell tensor, checked against the expected width.
std::int64_t batch_of(const char* op, const Tensor& t, std::int64_t width, const char* what) {
  if (t.ndim() != 2 || t.dim(1) != width) {
    throw ShapeError(std::string(op) + ": " + what + " has shape " + t.shape().str() + ", expected (batch, " +
                     std::to_string(width) + ")");
  }
  return t.dim(0);
}
void rows_are(const char* op, std::int64_t batch, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    if (t->ndim() != 2 || t->dim(0) != batch) {
      throw ShapeError(std::string(op) + ": " + t->shape().str() + " does not have " + std::to_string(batch) +
                       " rows");
    }
  }
}
}  // namespace

void lstm_cell_forward(const Tensor& gates, const Tensor& h, const Tensor& c, const Tensor& c_prev,
                       const Tensor& b_ih, const Tensor& b_hh) {
  const Device d = check_f32("lstm_cell_forward", {&gates, &h, &c, &c_prev, &b_ih, &b_hh});
  const std::int64_t hidden = h.ndim() == 2 ? h.dim(1) : -1;
  const std::int64_t batch = batch_of("lstm_cell_forward", gates, 4 * hidden, "gates");
  for (const Tensor* t : {&h, &c, &c_prev}) batch_of("lstm_cell_forward", *t, hidden, "a state");
  rows_are("lstm_cell_forward", batch, {&h, &c, &c_prev});
  numel_is("lstm_cell_forward", b_ih, 4 * hidden, "b_ih");
  numel_is("lstm_cell_forward", b_hh, 4 * hidden, "b_hh");
  twin<&cpu::lstm_cell_forward, &cuda::lstm_cell_forward>(d, {}, gates.data<float>(), h.data<float>(),
                                                           c.data<float>(), c_prev.data<float>(), b_ih.data<float>(),
                                                           b_hh.data<float>(), batch, hidden);
}

void lstm_cell_backward(const Tensor& dpre, const Tensor& dc_prev, const Tensor& dh, const Tensor& dc_next,
                        const Tensor& gates, const Tensor& c_prev, const Tensor& c) {
  const Device d = check_f32("lstm_cell_backward", {&dpre, &dc_prev, &dh, &dc_next, &gates, &c_prev, &c});
  const std::int64_t hidden = dh.ndim() == 2 ? dh.dim(1) : -1;
  const std::int64_t batch = batch_of("lstm_cell_backward", gates, 4 * hidden, "gates");
  batch_of("lstm_cell_backward", dpre, 4 * hidden, "dpre");
  for (const Tensor* t : {&dc_prev, &dh, &dc_next, &c_prev, &c}) batch_of("lstm_cell_backward", *t, hidden, "a state");
  rows_are("lstm_cell_backward", batch, {&dpre, &dc_prev, &dh, &dc_next, &c_prev, &c});
  twin<&cpu::lstm_cell_backward, &cuda::lstm_cell_backward>(d, {}, dpre.data<float>(), dc_prev.data<float>(),
                                                             dh.data<float>(), dc_next.data<float>(),
                                                             gates.data<float>(), c_prev.data<float>(),
                                                             c.data<float>(), batch, hidden);
}

void gru_cell_forward(const Tensor& save, const Tensor& h, const Tensor& xg, const Tensor& hg, const Tensor& h_prev,
                      const Tensor& b_ih, const Tensor& b_hh) {
  const Device d = check_f32("gru_cell_forward", {&save, &h, &xg, &hg, &h_prev, &b_ih, &b_hh});
  const std::int64_t hidden = h.ndim() == 2 ? h.dim(1) : -1;
  const std::int64_t batch = batch_of("gru_cell_forward", xg, 3 * hidden, "xg");
  batch_of("gru_cell_forward", hg, 3 * hidden, "hg");
  batch_of("gru_cell_forward", h_prev, hidden, "h_prev");
  batch_of("gru_cell_forward", save, 4 * hidden, "save");  // r, z, n and the hidden part of n
  rows_are("gru_cell_forward", batch, {&save, &h, &hg, &h_prev});
  numel_is("gru_cell_forward", b_ih, 3 * hidden, "b_ih");
  numel_is("gru_cell_forward", b_hh, 3 * hidden, "b_hh");
  twin<&cpu::gru_cell_forward, &cuda::gru_cell_forward>(d, {}, save.data<float>(), h.data<float>(), xg.data<float>(),
                                                         hg.data<float>(), h_prev.data<float>(), b_ih.data<float>(),
                                                         b_hh.data<float>(), batch, hidden);
}

void gru_cell_backward(const Tensor& dxg, const Tensor& dhg, const Tensor& dh_prev, const Tensor& dh,
                       const Tensor& save, const Tensor& h_prev) {
  const Device d = check_f32("gru_cell_backward", {&dxg, &dhg, &dh_prev, &dh, &save, &h_prev});
  const std::int64_t hidden = dh.ndim() == 2 ? dh.dim(1) : -1;
  const std::int64_t batch = batch_of("gru_cell_backward", dxg, 3 * hidden, "dxg");
  batch_of("gru_cell_backward", dhg, 3 * hidden, "dhg");
  batch_of("gru_cell_backward", dh_prev, hidden, "dh_prev");
  batch_of("gru_cell_backward", save, 4 * hidden, "save");
  rows_are("gru_cell_backward", batch, {&dhg, &dh_prev, &dh, &save, &h_prev});
  twin<&cpu::gru_cell_backward, &cuda::gru_cell_backward>(d, {}, dxg.data<float>(), dhg.data<float>(),
                                                           dh_prev.data<float>(), dh.data<float>(),
                                                           save.data<float>(), h_prev.data<float>(), batch, hidden);
}

void rnn_cell_forward(const Tensor& h, const Tensor& pre, const Tensor& b_ih, const Tensor& b_hh, bool relu) {
  const Device d = check_f32("rnn_cell_forward", {&h, &pre, &b_ih, &b_hh});
  same_shape("rnn_cell_forward", h, pre);
  const std::int64_t hidden = h.ndim() == 2 ? h.dim(1) : -1;
  const std::int64_t batch = batch_of("rnn_cell_forward", h, hidden, "h");
  numel_is("rnn_cell_forward", b_ih, hidden, "b_ih");
  numel_is("rnn_cell_forward", b_hh, hidden, "b_hh");
  twin<&cpu::rnn_cell_forward, &cuda::rnn_cell_forward>(d, {}, h.data<float>(), pre.data<float>(),
                                                         b_ih.data<float>(), b_hh.data<float>(), batch, hidden, relu);
}

void rnn_cell_backward(const Tensor& dpre, const Tensor& dh, const Tensor& h, bool relu) {
  const Device d = check_f32("rnn_cell_backward", {&dpre, &dh, &h});
  same_shape("rnn_cell_backward", dpre, dh);
  same_shape("rnn_cell_backward", dh, h);
  const std::int64_t hidden = h.ndim() == 2 ? h.dim(1) : -1;
  const std::int64_t batch = batch_of("rnn_cell_backward", h, hidden, "h");
  twin<&cpu::rnn_cell_backward, &cuda::rnn_cell_backward>(d, {}, dpre.data<float>(), dh.data<float>(),
                                                           h.data<float>(), batch, hidden, relu);
}

void embedding_forward(const Tensor& y, const Tensor& ids, const Tensor& table) {
  const Device d = check_f32("embedding_forward", {&y, &table});
  check("embedding_forward", DType::kI32, {&ids});
  same_device("embedding_forward", ids, table);
  if (table.ndim() != 2 || y.ndim() == 0 || y.dim(y.ndim() - 1) != table.dim(1) ||
      y.numel() != ids.numel() * table.dim(1)) {
    throw ShapeError("embedding_forward: ids " + ids.shape().str() + ", table " + table.shape().str() +
                     " and output " + y.shape().str() + " are not (...), (vocab, dim) and (..., dim)");
  }
  twin<&cpu::embedding_forward, &cuda::embedding_forward>(d, {}, y.data<float>(), ids.data<std::int32_t>(),
                                                           table.data<float>(), ids.numel(), table.dim(1),
                                                           table.dim(0));
}

void embedding_backward(const Tensor& dtable, const Tensor& ids, const Tensor& dy) {
  const Device d = check_f32("embedding_backward", {&dtable, &dy});
  check("embedding_backward", DType::kI32, {&ids});
  same_device("embedding_backward", ids, dtable);
  if (dtable.ndim() != 2 || dy.numel() != ids.numel() * dtable.dim(1)) {
    throw ShapeError("embedding_backward: ids " + ids.shape().str() + ", table gradient " + dtable.shape().str() +
                     " and gradient " + dy.shape().str() + " are not (...), (vocab, dim) and (..., dim)");
  }
  twin<&cpu::embedding_backward, &cuda::embedding_backward>(d, {}, dtable.data<float>(), ids.data<std::int32_t>(),
                                                             dy.data<float>(), ids.numel(), dtable.dim(1),
                                                             dtable.dim(0));
}

void reverse_first_axis(const Tensor& dst, const Tensor& src) {
  const Device d = check_f32("reverse_first_axis", {&dst, &src});
  same_shape("reverse_first_axis", dst, src);
  if (src.ndim() == 0) throw ShapeError("reverse_first_axis: expected at least one axis, got a scalar");
  const std::int64_t steps = src.dim(0);
  twin<&cpu::reverse_steps, &cuda::reverse_steps>(d, {}, dst.data<float>(), src.data<float>(), steps,
                                                   steps == 0 ? 0 : src.numel() / steps);
}

}  // namespace gpudl::nn
