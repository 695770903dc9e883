// Every case of the op table (tests/cases) on the GPU against the CPU: the same layer (same
// parameters, same generator state) runs a train-mode forward and backward, then an eval-mode
// forward, on both devices; outputs, input gradients, parameter gradients and buffers agree
// within the case's tolerance. Each case runs in every dtype of the table's dtype axis (bf16 and
// fp16 through the layer's precision, the input and output gradient in that type).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "op_cases.h"
#include "test_util.h"

namespace gpudl {
namespace {

using cases::OpCase;
using testing::relative_error;

class OpTableGpu : public testing::GpuTest, public ::testing::WithParamInterface<cases::TypedCase> {};

std::string case_name(const ::testing::TestParamInfo<cases::TypedCase>& info) { return cases::typed_name(info.param); }

std::vector<float> host(const Tensor& t) { return t.to(Device::cpu()).as(DType::kF32).to_vector<float>(); }

struct Outcome {
  std::vector<std::vector<float>> values;
  std::vector<std::string> what;
};

Outcome run_once(const OpCase& c, Module& m, Device d, const Tensor& x_host, const Tensor& dy_host,
        const std::vector<std::pair<std::uint64_t, std::uint64_t>>& rng) {
  m.to(d);
  auto gens = m.generators();
  for (std::size_t i = 0; i < gens.size(); ++i) gens[i]->set_state(rng[i].first, rng[i].second);
  m.train();
  m.zero_grad();
  const Tensor x = x_host.to(d);
  Outcome r;
  const Tensor y = m.forward(x);
  r.values.push_back(host(y));
  r.what.push_back("output");
  const Tensor dx = m.backward(dy_host.to(d));
  if (c.id_range == 0) {
    r.values.push_back(host(dx));
    r.what.push_back("input gradient");
  }
  for (Parameter* p : m.parameters()) {
    r.values.push_back(host(p->grad));
    r.what.push_back("gradient of " + p->name);
  }
  for (auto& [name, t] : m.buffers()) {
    if (t->dtype() != DType::kF32) continue;
    r.values.push_back(host(*t));
    r.what.push_back("buffer " + name);
  }
  m.eval();
  r.values.push_back(host(m.forward(x)));
  r.what.push_back("eval-mode output");
  return r;
}

TEST_P(OpTableGpu, MatchesTheCpu) {
  const OpCase& c = GetParam().op;
  const DType dtype = GetParam().dtype;
  manual_seed(testing::test_seed());
  const auto on_cpu = c.make();
  const auto on_gpu = c.make();
  on_gpu->load_state(on_cpu->state());
  std::vector<std::pair<std::uint64_t, std::uint64_t>> rng;
  for (Generator* g : on_cpu->generators()) rng.emplace_back(g->seed(), g->offset());
  Tensor x = cases::make_input(c, c.input, testing::test_seed() ^ 0x61);
  if (dtype != DType::kF32) x = x.cast(dtype);
  on_cpu->set_precision(cases::precision_for(dtype));
  on_gpu->set_precision(cases::precision_for(dtype));
  on_cpu->eval();
  const Tensor y_shape = on_cpu->forward(x);
  const Shape out = y_shape.shape();
  const Tensor dy = Tensor::from_vector(testing::random_vector(static_cast<std::size_t>(out.numel()), 0x62), out)
                        .as(y_shape.dtype());
  const double tolerance =
      dtype == DType::kF32 ? c.gpu_tolerance : c.low_precision_units * cases::unit_roundoff(dtype);
  const Outcome expected = run_once(c, *on_cpu, Device::cpu(), x, dy, rng);
  const Outcome got = run_once(c, *on_gpu, Device::cuda(0), x, dy, rng);
  ASSERT_EQ(got.values.size(), expected.values.size());
  for (std::size_t i = 0; i < got.values.size(); ++i) {
    ASSERT_EQ(got.values[i].size(), expected.values[i].size()) << c.name << ": " << expected.what[i];
    EXPECT_LE(relative_error(got.values[i], expected.values[i]), tolerance)
        << c.name << " in " << dtype_name(dtype) << ": " << expected.what[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, OpTableGpu, ::testing::ValuesIn(cases::typed_cases()), case_name);

}  // namespace
}  // namespace gpudl
