// GPU defects found by reading the code (issue 13): tensor copies and reads across the compute
// and copy streams, batch norm past a grid's y extent, batched GEMMs past cuBLAS's batch limit,
// and convolution plans searched mid-run on pool memory; each against the CPU twin.
#include "gpu/equivalence.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/core/runtime/context.h"
#include "gpudl/kernels/conv.h"
#include "gpudl/kernels/gemm.h"
#include "gpudl/kernels/norm.h"

namespace gpudl::testing {
namespace {

using GpuDefects = GpuTest;
using kernels::ConvGeometry;
using kernels::index_t;

// Batch norm with three values per channel, as the smallest case of the Layers suite: the sums
// differ only in order (tree on the GPU, double on the CPU), ~sqrt(n) ulp.
constexpr double kBatchNormTolerance = 1e-5;
// cuDNN against im2col + OpenBLAS, FP32 math, as the Conv suite (conv_equivalence_test.cpp).
constexpr double kConvTolerance = 1e-4;
// Enough f32 elements (256 MiB) that filling or copying them keeps a stream busy for well over
// the time the small transfer under test needs, so that an unordered pair of streams shows.
constexpr std::int64_t kBusyElements = std::int64_t{1} << 26;
constexpr std::int64_t kSmall = std::int64_t{1} << 20;

void expect_same_floats(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  std::size_t wrong = 0, first = got.size();
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      if (wrong++ == 0) first = i;
    }
  }
  EXPECT_EQ(wrong, 0u) << what << ": " << wrong << " of " << got.size() << " elements stale, the first at " << first
                       << " (" << got[first < got.size() ? first : 0] << ")";
}

// Compares every output of a run on the CPU and on CUDA:0, none left poisoned.
void expect_outputs_match(const Outputs& cpu, const Outputs& gpu, double tolerance, const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_EQ(cpu[i].size(), gpu[i].size()) << what << " output " << i;
    for (std::size_t j = 0; j < cpu[i].size(); ++j) {
      ASSERT_FALSE(std::isnan(gpu[i][j]) && !std::isnan(cpu[i][j]))
          << what << " output " << i << " element " << j << " left poisoned";
    }
    EXPECT_LE(relative_error(gpu[i], cpu[i]), tolerance) << what << " output " << i;
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Copies and reads across streams

// Tensor::copy_from_async on the copy stream used not to wait for the compute stream, so a NaN
// fill of a fresh destination, queued behind other compute work, landed after the copy.
TEST_F(GpuDefects, AsyncCopyIntoAFreshTensorWaitsForTheComputeStreamThatFilledIt) {
  const Device d = Device::cuda(0);
  Context& ctx = Context::get(d);
  const auto v = random_vector(static_cast<std::size_t>(kSmall), 300);
  Tensor pinned = Tensor::empty_pinned({kSmall});
  std::copy(v.begin(), v.end(), pinned.data<float>());
  Tensor busy = Tensor::empty({kBusyElements}, DType::kF32, d);
  for (int i = 0; i < 20; ++i) busy.fill_(static_cast<double>(i));
  Tensor dst = Tensor::full({kSmall}, std::numeric_limits<double>::quiet_NaN(), DType::kF32, d);
  dst.copy_from_async(pinned, ctx.copy_stream());
  ctx.synchronize();  // both streams, so that only the copy's own ordering is under test
  expect_same_floats(dst.to_vector<float>(), v, "copy stream into a tensor filled on the compute stream");
}

// A tensor written on the copy stream, behind a large transfer, and read at once in four ways.
// to_vector and copy_from used to synchronise only the compute stream, and an async copy on
// the compute stream did not wait for the copy stream, so each read the old values.
TEST_F(GpuDefects, ReadsWaitForTheCopyStreamThatLastWroteATensor) {
  const Device d = Device::cuda(0);
  Context& ctx = Context::get(d);
  const auto v = random_vector(static_cast<std::size_t>(kSmall), 301);
  Tensor pinned = Tensor::empty_pinned({kSmall});
  std::copy(v.begin(), v.end(), pinned.data<float>());
  Tensor big_host = Tensor::empty_pinned({kBusyElements});
  std::memset(big_host.raw(), 0, big_host.nbytes());
  Tensor big_dev = Tensor::empty({kBusyElements}, DType::kF32, d);

  enum class Read { kToVector, kToCpu, kClone, kAsyncOnCompute };
  for (Read read : {Read::kToVector, Read::kToCpu, Read::kClone, Read::kAsyncOnCompute}) {
    Tensor dst = Tensor::full({kSmall}, -7.0, DType::kF32, d);
    ctx.synchronize();  // the old values are in place before the race starts
    big_dev.copy_from_async(big_host, ctx.copy_stream());
    dst.copy_from_async(pinned, ctx.copy_stream());
    std::vector<float> got;
    std::string what;
    switch (read) {
      case Read::kToVector:
        what = "to_vector";
        got = dst.to_vector<float>();
        break;
      case Read::kToCpu:
        what = "to(cpu)";
        got = dst.to(Device::cpu()).to_vector<float>();
        break;
      case Read::kClone: {
        what = "clone";
        const Tensor copy = dst.clone();
        ctx.synchronize();
        got = copy.to_vector<float>();
        break;
      }
      case Read::kAsyncOnCompute: {
        what = "copy_from_async on the compute stream";
        Tensor out = Tensor::empty_pinned({kSmall});
        out.copy_from_async(dst, ctx.compute_stream());
        ctx.compute_stream().synchronize();
        got = out.to_vector<float>();
        break;
      }
    }
    expect_same_floats(got, v, what + " of a tensor the copy stream wrote");
    ctx.synchronize();
  }
}

// Stream::wait(Stream) orders later work on one stream after what another has queued.
TEST_F(GpuDefects, AStreamWaitsForAnotherStream) {
  const Device d = Device::cuda(0);
  Context& ctx = Context::get(d);
  const auto v = random_vector(static_cast<std::size_t>(kSmall), 302);
  Tensor pinned = Tensor::empty_pinned({kSmall});
  std::copy(v.begin(), v.end(), pinned.data<float>());
  Tensor src = Tensor::full({kSmall}, 3.0, DType::kF32, d);
  Tensor busy = Tensor::empty({kBusyElements}, DType::kF32, d);
  ctx.synchronize();
  for (int i = 0; i < 20; ++i) busy.fill_(static_cast<double>(i));
  src.copy_from_async(pinned, ctx.compute_stream());  // behind the fills
  Tensor out = Tensor::empty_pinned({kSmall});
  ctx.copy_stream().wait(ctx.compute_stream());
  cuda_api::memcpy_async(out.raw(), src.raw(), src.nbytes(), cuda_api::CopyKind::kDeviceToHost,
                         ctx.copy_stream().handle());
  ctx.copy_stream().synchronize();
  expect_same_floats(out.to_vector<float>(), v, "copy stream after Stream::wait(compute stream)");
  ctx.synchronize();
}

// ---------------------------------------------------------------------------------------------
// 2. Batch norm with more channels than a grid's y extent

Outputs run_batchnorm(Device d, std::int64_t n, std::int64_t c, std::int64_t inner) {
  const Shape shape{n, c, inner};
  Tensor x = input(shape, d, 310, -2.0f, 3.0f), dy = input(shape, d, 311);
  Tensor gamma = input({c}, d, 312, 0.5f, 1.5f), beta = input({c}, d, 313);
  Tensor rm = input({c}, d, 314), rv = input({c}, d, 315, 0.5f, 2.0f);
  Guarded y = guarded(shape, DType::kF32, d), ye = guarded(shape, DType::kF32, d), dx = guarded(shape, DType::kF32, d);
  Guarded mean = guarded({c}, DType::kF32, d), invstd = guarded({c}, DType::kF32, d);
  Tensor dgamma = input({c}, d, 316), dbeta = input({c}, d, 317);
  const bool cuda = d.is_cuda();
  Tensor scratch = cuda ? Tensor::empty({kernels::batchnorm_scratch_floats(n, c, inner)}, DType::kF32, d) : Tensor();
  float* sp = cuda ? scratch.data<float>() : nullptr;
  const kernels::Exec exec = Context::get(d).exec();
  auto* train = cuda ? &kernels::cuda::batchnorm_forward_train : &kernels::cpu::batchnorm_forward_train;
  auto* eval = cuda ? &kernels::cuda::batchnorm_forward_eval : &kernels::cpu::batchnorm_forward_eval;
  auto* backward = cuda ? &kernels::cuda::batchnorm_backward : &kernels::cpu::batchnorm_backward;
  train(y.view.data<float>(), mean.view.data<float>(), invstd.view.data<float>(), rm.data<float>(), rv.data<float>(),
        x.data<float>(), gamma.data<float>(), beta.data<float>(), DType::kF32, n, c, inner, 1e-5f, 0.1f, sp, exec);
  eval(ye.view.data<float>(), x.data<float>(), rm.data<float>(), rv.data<float>(), gamma.data<float>(),
       beta.data<float>(), DType::kF32, n, c, inner, 1e-5f, exec);
  backward(dx.view.data<float>(), dgamma.data<float>(), dbeta.data<float>(), dy.data<float>(), x.data<float>(),
           mean.view.data<float>(), invstd.view.data<float>(), gamma.data<float>(), DType::kF32, n, c, inner, sp,
           exec);
  return Outputs{collect(y),           collect(mean),          collect(invstd),
                 rm.to_vector<float>(), rv.to_vector<float>(),  collect(ye),
                 collect(dx),          dgamma.to_vector<float>(), dbeta.to_vector<float>()};
}

// Channels ran on grid y, which stops at 65535: the launch failed where the CPU worked.
TEST_F(GpuDefects, BatchNormWithMoreChannelsThanAGridsYExtent) {
  constexpr std::int64_t kChannels = 70000;
  expect_outputs_match(run_batchnorm(Device::cpu(), 3, kChannels, 3), run_batchnorm(Device::cuda(0), 3, kChannels, 3),
                       kBatchNormTolerance, "batchnorm 3x70000x3");
}

// ---------------------------------------------------------------------------------------------
// 3. Batched GEMM with more products than cuBLAS takes in one call

// gemm.cu passed the whole batch to cuBLAS, which refuses (or mislaunches) past kMaxGemmBatch;
// conv.cu already split. Tiny matrices, so the batch is what is large.
TEST_F(GpuDefects, BatchedGemmWithMoreProductsThanCublasTakesAtOnce) {
  const index_t batch = kernels::kMaxGemmBatch + 4465;  // 70000: one full slice and a partial one
  struct Config {
    kernels::Transpose ta, tb;
    float alpha, beta;
  };
  for (Config cfg : {Config{kernels::Transpose::kNo, kernels::Transpose::kNo, 1.0f, 0.0f},
                     Config{kernels::Transpose::kYes, kernels::Transpose::kYes, -0.5f, 2.0f}}) {
    const index_t m = 2, n = 3, k = 4;
    const bool ta = cfg.ta == kernels::Transpose::kYes, tb = cfg.tb == kernels::Transpose::kYes;
    auto run = [&](Device d) {
      const Tensor a = input({batch, ta ? k : m, ta ? m : k}, d, 320);
      const Tensor b = input({batch, tb ? n : k, tb ? k : n}, d, 321);
      Guarded c = guarded({batch, m, n}, DType::kF32, d);
      if (cfg.beta != 0.0f) ops::copy(c.view, input({batch, m, n}, d, 322));
      const kernels::Exec exec = Context::get(d).exec(true);
      auto* gemm = d.is_cuda() ? &kernels::cuda::gemm_strided_batched : &kernels::cpu::gemm_strided_batched;
      gemm(cfg.ta, cfg.tb, m, n, k, cfg.alpha, a.data<float>(), ta ? m : k, m * k, b.data<float>(), tb ? k : n, k * n,
           cfg.beta, c.view.data<float>(), n, m * n, batch, exec);
      return Outputs{collect(c)};
    };
    expect_outputs_match(run(Device::cpu()), run(Device::cuda(0)), kGemmTolerance,
                         std::string("gemm_strided_batched 70000x2x3x4") + (ta ? " transposed" : ""));
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Convolution plans made mid-run

// Whether convolution plans time cuDNN's candidates (else they take its heuristic ranking,
// which allocates nothing and so never lacks memory).
bool timed_search() {
  const char* algo = std::getenv("GPUDL_CONV_ALGO");
  return !deterministic() && (algo == nullptr || std::string(algo) != "heuristic");
}

// A geometry no other test and no earlier repetition of this one has used, so that its plan is
// made here: the batch (the short last batch of an epoch) grows on every call.
ConvGeometry fresh_geometry() {
  static index_t round = 0;
  const index_t n = 7 + 2 * round++;
  return {n, 6, 13, 11, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1};
}

// Lends the context's pool and counts what passes through, or refuses every request as a
// device with no memory left would.
class TestScratch final : public kernels::ScratchAllocator {
 public:
  TestScratch(kernels::ScratchAllocator* pool, bool refuse) : pool_(pool), refuse_(refuse) {}
  void* allocate(std::size_t bytes, void* stream) override {
    if (refuse_) {
      ++refused;
      throw OutOfMemoryError("test: refusing " + std::to_string(bytes) + " bytes of scratch");
    }
    ++allocations;
    return pool_->allocate(bytes, stream);
  }
  void deallocate(void* ptr) noexcept override { pool_->deallocate(ptr); }
  void release_cached() noexcept override {
    ++releases;
    pool_->release_cached();
  }
  int allocations = 0, refused = 0, releases = 0;

 private:
  kernels::ScratchAllocator* pool_;
  bool refuse_;
};

// Forward with bias, backward data, backward filter into pre-filled gradients, outputs poisoned
// and guarded; on CUDA with `scratch` as the launch context's scratch allocator when given.
Outputs run_conv(Device d, const ConvGeometry& g, kernels::ScratchAllocator* scratch = nullptr) {
  const kernels::ConvOptions o{};
  const index_t cg = g.c / g.groups;
  const Shape xs{g.n, g.c, g.h, g.w}, ws{g.k, cg, g.r, g.s}, ys{g.n, g.k, g.out_h(), g.out_w()}, bs{g.k};
  const Tensor x = input(xs, d, 330), w = input(ws, d, 331), bias = input(bs, d, 332), dy = input(ys, d, 333);
  Guarded y = guarded(ys, DType::kF32, d), dx = guarded(xs, DType::kF32, d);
  Guarded dw = guarded(ws, DType::kF32, d), db = guarded(bs, DType::kF32, d);
  ops::copy(dw.view, input(ws, d, 334));
  ops::copy(db.view, input(bs, d, 335));
  Context& ctx = Context::get(d);
  kernels::Exec exec = ctx.exec(true, true);
  if (scratch != nullptr) exec.scratch = scratch;
  const bool cuda = d.is_cuda();
  const std::size_t bytes =
      cuda ? kernels::cuda::conv2d_workspace_bytes(g, o, exec) : kernels::cpu::conv2d_workspace_bytes(g, o, exec);
  void* workspace = ctx.workspace(bytes);
  auto* forward = cuda ? &kernels::cuda::conv2d_forward : &kernels::cpu::conv2d_forward;
  auto* backward_data = cuda ? &kernels::cuda::conv2d_backward_data : &kernels::cpu::conv2d_backward_data;
  auto* backward_filter = cuda ? &kernels::cuda::conv2d_backward_filter : &kernels::cpu::conv2d_backward_filter;
  forward(y.view.data<float>(), x.data<float>(), w.data<float>(), bias.data<float>(), g, o, workspace, bytes, exec);
  backward_data(dx.view.data<float>(), dy.data<float>(), w.data<float>(), g, o, workspace, bytes, exec);
  backward_filter(dw.view.data<float>(), db.view.data<float>(), dy.data<float>(), x.data<float>(), g, o, workspace,
                  bytes, exec);
  return Outputs{collect(y), collect(dx), collect(dw), collect(db)};
}

// A short last batch after steady-state steps: its plan is searched on scratch memory from the
// context's pool, kept only if no candidate lacked memory, and its results match the CPU's.
TEST_F(GpuDefects, ConvPlanAtANewShapeMidRunComesFromThePoolAndIsKeptOnlyWithoutMemoryFailures) {
  const Device d = Device::cuda(0);
  Context& ctx = Context::get(d);
  ConvGeometry steady = fresh_geometry();
  steady.n = 64;
  for (int step = 0; step < 2; ++step) run_conv(d, steady);  // the epoch's full batches
  const ConvGeometry last = fresh_geometry();
  TestScratch counting(ctx.scratch_allocator(), false);
  const kernels::cuda::ConvPlanStats before = kernels::cuda::conv_plan_stats();
  const Outputs gpu = run_conv(d, last, &counting);
  const kernels::cuda::ConvPlanStats after = kernels::cuda::conv_plan_stats();
  EXPECT_EQ(after.searches - before.searches, 1u) << "one search serves the size query and all three directions";
  const std::uint64_t limited = after.memory_limited_searches - before.memory_limited_searches;
  EXPECT_EQ(after.kept_plans - before.kept_plans, limited == 0 ? 1u : 0u)
      << "a plan is kept exactly when its search lacked no memory";
  if (timed_search()) {
    EXPECT_GE(counting.allocations, 3) << "the scratch tensors (and workspace) come from the context's pool";
    EXPECT_EQ(after.scratch_allocations - before.scratch_allocations, static_cast<std::uint64_t>(counting.allocations));
  } else {
    EXPECT_EQ(counting.allocations, 0) << "heuristic ranking times nothing";
  }
  expect_outputs_match(run_conv(Device::cpu(), last), gpu, kConvTolerance, "conv2d at a short last batch");
  // The same shape again (the next epoch's last batch) searches no more.
  const kernels::cuda::ConvPlanStats again_before = kernels::cuda::conv_plan_stats();
  const Outputs again = run_conv(d, last);
  const kernels::cuda::ConvPlanStats again_after = kernels::cuda::conv_plan_stats();
  if (limited == 0) {
    EXPECT_EQ(again_after.searches, again_before.searches);
  }
  expect_outputs_match(run_conv(Device::cpu(), last), again, kConvTolerance, "conv2d at the short last batch again");
}

// With no memory to be had, the search releases the cache, retries, falls back to heuristics and
// keeps nothing; the next search at that shape, with memory, is kept. Results match throughout.
TEST_F(GpuDefects, ConvPlanSearchedShortOfMemoryIsNotKept) {
  if (!timed_search()) GTEST_SKIP() << "convolution plans use cuDNN's heuristics here (deterministic mode or "
                                       "GPUDL_CONV_ALGO=heuristic), which need no memory to rank";
  const Device d = Device::cuda(0);
  Context& ctx = Context::get(d);
  const ConvGeometry g = fresh_geometry();
  const Outputs cpu = run_conv(Device::cpu(), g);

  TestScratch refusing(ctx.scratch_allocator(), true);
  kernels::cuda::ConvPlanStats before = kernels::cuda::conv_plan_stats();
  expect_outputs_match(cpu, run_conv(d, g, &refusing), kConvTolerance, "conv2d planned without memory");
  kernels::cuda::ConvPlanStats after = kernels::cuda::conv_plan_stats();
  EXPECT_EQ(after.searches - before.searches, 1u);
  EXPECT_EQ(after.memory_limited_searches - before.memory_limited_searches, 1u);
  EXPECT_EQ(after.kept_plans, before.kept_plans) << "a plan made short of memory was kept";
  EXPECT_GE(refusing.refused, 1);
  EXPECT_GE(refusing.releases, 1) << "the search did not ask for cached memory to be released before giving up";

  before = after;
  TestScratch counting(ctx.scratch_allocator(), false);
  expect_outputs_match(cpu, run_conv(d, g, &counting), kConvTolerance, "conv2d planned again with memory");
  after = kernels::cuda::conv_plan_stats();
  EXPECT_EQ(after.searches - before.searches, 1u) << "the provisional plan was not searched again";
  EXPECT_GE(counting.allocations, 3);
  if (after.memory_limited_searches == before.memory_limited_searches) {
    EXPECT_EQ(after.kept_plans - before.kept_plans, 1u);
    EXPECT_EQ(before.provisional_plans - after.provisional_plans, 1u);
  }
}

}  // namespace
}  // namespace gpudl::testing
