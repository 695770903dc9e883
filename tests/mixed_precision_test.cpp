// Mixed precision on the CPU: the precision policy's names and errors, the low-precision GEMM
// against a double loop, bf16/fp16 layers keeping FP32 masters, and the Trainer under bf16 and
// fp16 (a forced overflow skipped and recovered from, the loss scale resumed exactly).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "gpudl/core/io/json.h"
#include "gpudl/core/io/model_file.h"
#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/kernels/conv.h"
#include "gpudl/kernels/gemm.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/sequential.h"
#include "test_util.h"

namespace gpudl {
namespace {

namespace fs = std::filesystem;
using kernels::Transpose;

// ---------------------------------------------------------------------------------------------
// The policy

TEST(Precision, NamesRoundTripAndUnknownOnesAreOneLineErrors) {
  for (Precision p : {Precision::kF32, Precision::kTF32, Precision::kBF16, Precision::kF16}) {
    EXPECT_EQ(parse_precision(precision_name(p)), p);
  }
  for (const char* bad : {"fp8", "", "BF16", "float16"}) {
    try {
      parse_precision(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const ValueError& e) {
      EXPECT_EQ(std::string(e.what()),
                "unknown precision \"" + std::string(bad) + "\" (expected fp32, tf32, bf16 or fp16)");
    }
  }
}

// What check_precision throws on a GPU that lacks a precision, without needing such a GPU.
TEST(Precision, AGpuWithoutSupportIsNamedInOneLine) {
  EXPECT_EQ(precision_unsupported(Precision::kBF16, 75, "cuda:0 (Tesla T4)"),
            "precision bf16 needs a GPU of compute capability 8.0 or newer; cuda:0 (Tesla T4) is 7.5");
  EXPECT_EQ(precision_unsupported(Precision::kTF32, 70, "cuda:1 (V100)"),
            "precision tf32 needs a GPU of compute capability 8.0 or newer; cuda:1 (V100) is 7.0");
  EXPECT_EQ(precision_unsupported(Precision::kF16, 52, "cuda:0 (M40)"),
            "precision fp16 needs a GPU of compute capability 6.0 or newer; cuda:0 (M40) is 5.2");
  EXPECT_EQ(precision_unsupported(Precision::kF16, 70, "cuda:0 (V100)"), "");
  EXPECT_EQ(precision_unsupported(Precision::kBF16, 90, "cuda:0 (H100)"), "");
  EXPECT_EQ(precision_unsupported(Precision::kF32, 35, "cuda:0 (K20)"), "");
}

TEST(Precision, TheCpuDefaultsToFp32AndRunsEveryPrecision) {
  EXPECT_EQ(default_precision(Device::cpu()), Precision::kF32);
  for (Precision p : {Precision::kF32, Precision::kTF32, Precision::kBF16, Precision::kF16}) {
    EXPECT_NO_THROW(check_precision(p, Device::cpu())) << precision_name(p);
  }
  EXPECT_EQ(activation_dtype(Precision::kBF16), DType::kBF16);
  EXPECT_EQ(activation_dtype(Precision::kF16), DType::kF16);
  EXPECT_EQ(activation_dtype(Precision::kTF32), DType::kF32);
  EXPECT_TRUE(allows_tf32(Precision::kTF32));
  EXPECT_FALSE(allows_tf32(Precision::kBF16));
}

// ---------------------------------------------------------------------------------------------
// The low-precision GEMM (CPU twin of cuBLAS's tensor-core products)

std::vector<float> rounded(const std::vector<float>& v, DType t) {
  return Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())}).cast(t).cast(DType::kF32).to_vector<float>();
}

Tensor stored(const std::vector<float>& v, DType t) {
  return Tensor::from_vector(v, {static_cast<std::int64_t>(v.size())}).cast(t);
}

class GemmLow : public ::testing::TestWithParam<std::tuple<DType, bool, bool>> {};

// Operands stored in the low type, sums in FP32 against a double loop over the same stored
// values; C in the low type rounded once (so within one rounding of the double result: u plus the
// FP32 sum's drift), or accumulated into an FP32 C with beta.
TEST_P(GemmLow, MatchesADoubleLoopOverTheStoredValues) {
  const auto [t, ta, tb] = GetParam();
  const std::int64_t m = 7, n = 5, k = 33;
  const std::int64_t lda = (ta ? m : k) + 2, ldb = (tb ? k : n) + 1, ldc = n + 3;
  const std::int64_t a_rows = ta ? k : m, b_rows = tb ? n : k;
  const auto a = rounded(testing::random_vector(static_cast<std::size_t>(a_rows * lda), 1), t);
  const auto b = rounded(testing::random_vector(static_cast<std::size_t>(b_rows * ldb), 2), t);
  const auto c0 = rounded(testing::random_vector(static_cast<std::size_t>(m * ldc), 3), t);
  const Tensor ta_ = stored(a, t), tb_ = stored(b, t);
  // Unit roundoff: 2^-8 for bf16's 8 significant bits, 2^-11 for fp16's 11.
  const double u = t == DType::kBF16 ? 1.0 / 256 : 1.0 / 2048;
  for (float beta : {0.0f, -0.5f}) {
    std::vector<float> expected = c0;
    testing::naive_gemm(ta, tb, m, n, k, 0.75, a, lda, b, ldb, beta, expected, ldc);
    // Into a low C: within one rounding (u) of the double result, plus the FP32 sum's drift
    // (33 terms: below 1e-5 absolute here).
    const Tensor c_low = stored(c0, t);
    kernels::cpu::gemm_ex(ta ? Transpose::kYes : Transpose::kNo, tb ? Transpose::kYes : Transpose::kNo, m, n, k,
                          0.75f, t, ta_.raw(), lda, tb_.raw(), ldb, beta, t, c_low.raw(), ldc, false, {});
    const std::vector<float> got = c_low.cast(DType::kF32).to_vector<float>();
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t j = 0; j < ldc; ++j) {
        const std::size_t at = static_cast<std::size_t>(i * ldc + j);
        if (j >= n) {
          EXPECT_EQ(got[at], c0[at]) << "the gap past column n was written at row " << i;
          continue;
        }
        EXPECT_NEAR(got[at], expected[at], u * std::abs(expected[at]) + 1e-5) << i << "," << j << " beta " << beta;
      }
    }
    // Into an FP32 C: no rounding of the result at all.
    const Tensor c_f32 = Tensor::from_vector(c0, {m * ldc});
    kernels::cpu::gemm_ex(ta ? Transpose::kYes : Transpose::kNo, tb ? Transpose::kYes : Transpose::kNo, m, n, k,
                          0.75f, t, ta_.raw(), lda, tb_.raw(), ldb, beta, DType::kF32, c_f32.raw(), ldc, false, {});
    std::vector<float> got32 = c_f32.to_vector<float>();
    for (std::int64_t i = 0; i < m; ++i) {
      got32.erase(got32.begin() + i * n + n, got32.begin() + i * n + ldc);  // keep the n columns
    }
    std::vector<float> want;
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t j = 0; j < n; ++j) want.push_back(expected[static_cast<std::size_t>(i * ldc + j)]);
    }
    EXPECT_LE(testing::relative_error(got32, want), 1e-5) << "beta " << beta;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, GemmLow,
                         ::testing::Combine(::testing::Values(DType::kBF16, DType::kF16), ::testing::Bool(),
                                            ::testing::Bool()));

TEST(GemmLow, RejectsAMixOfTypesNamingThem) {
  const Tensor a = Tensor::zeros({4}, DType::kBF16), c = Tensor::zeros({4}, DType::kF16);
  try {
    kernels::cpu::gemm_ex(Transpose::kNo, Transpose::kNo, 2, 2, 2, 1.0f, DType::kBF16, a.raw(), 2, a.raw(), 2, 0.0f,
                          DType::kF16, c.raw(), 2, false, {});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("operands of dtype bf16 into f16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ops::matmul(Tensor::zeros({2, 2}, DType::kBF16), Tensor::zeros({2, 2}, DType::kF16)), ValueError);
}

// ---------------------------------------------------------------------------------------------
// The low-precision convolution's rounding points (conv.inc), which cuDNN's twin must match:
// y = round(round(x * w) + bias), dx = round(dy * w), dweight += round(dW); dbias in FP32.

TEST(ConvLow, RoundsWhereCudnnStoresAndAccumulatesFp32Gradients) {
  const kernels::ConvGeometry g{.n = 2, .c = 3, .h = 5, .w = 6, .k = 4, .r = 3, .s = 3, .pad_h = 1, .pad_w = 1};
  const std::int64_t nx = 2 * 3 * 5 * 6, nw = 4 * 3 * 3 * 3, ny = 2 * 4 * 5 * 6;
  for (DType t : {DType::kBF16, DType::kF16}) {
    const auto x = rounded(testing::random_vector(nx, 31), t), w = rounded(testing::random_vector(nw, 32), t);
    const auto dy = rounded(testing::random_vector(ny, 33), t), bias = testing::random_vector(4, 34);
    const kernels::ConvOptions f32{}, low{.dtype = t};
    std::vector<float> ws(kernels::cpu::conv2d_workspace_bytes(g, f32, {}) / sizeof(float) + 1);
    const std::size_t ws_bytes = ws.size() * sizeof(float);
    // FP32 references on the same stored values.
    std::vector<float> y32(ny), dx32(nx), dw32(nw, 0.0f), db32(4, 0.0f);
    kernels::cpu::conv2d_forward(y32.data(), x.data(), w.data(), nullptr, g, f32, ws.data(), ws_bytes, {});
    kernels::cpu::conv2d_backward_data(dx32.data(), dy.data(), w.data(), g, f32, ws.data(), ws_bytes, {});
    kernels::cpu::conv2d_backward_filter(dw32.data(), db32.data(), dy.data(), x.data(), g, f32, ws.data(), ws_bytes,
                                         {});
    std::vector<float> y_want = rounded(y32, t);
    for (std::int64_t i = 0; i < ny; ++i) {
      y_want[static_cast<std::size_t>(i)] += bias[static_cast<std::size_t>((i / 30) % 4)];  // 30 = 5 x 6 outputs
    }
    y_want = rounded(y_want, t);
    const std::vector<float> dw0 = testing::random_vector(nw, 35), db0 = testing::random_vector(4, 36);
    std::vector<float> dw_want = rounded(dw32, t), db_want = db0;
    for (std::size_t i = 0; i < dw_want.size(); ++i) dw_want[i] += dw0[i];
    for (std::size_t i = 0; i < 4; ++i) db_want[i] += db32[i];

    const Tensor xl = stored(x, t), wl = stored(w, t), dyl = stored(dy, t);
    const Tensor yl = Tensor::empty({ny}, t), dxl = Tensor::empty({nx}, t);
    std::vector<float> dw = dw0, db = db0;
    kernels::cpu::conv2d_forward(yl.raw(), xl.raw(), wl.raw(), bias.data(), g, low, ws.data(), ws_bytes, {});
    kernels::cpu::conv2d_backward_data(dxl.raw(), dyl.raw(), wl.raw(), g, low, ws.data(), ws_bytes, {});
    kernels::cpu::conv2d_backward_filter(dw.data(), db.data(), dyl.raw(), xl.raw(), g, low, ws.data(), ws_bytes, {});
    EXPECT_EQ(yl.cast(DType::kF32).to_vector<float>(), y_want) << dtype_name(t);
    EXPECT_EQ(dxl.cast(DType::kF32).to_vector<float>(), rounded(dx32, t)) << dtype_name(t);
    EXPECT_EQ(dw, dw_want) << dtype_name(t);
    for (std::size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(db[i], db_want[i]) << dtype_name(t);
  }
}

// ---------------------------------------------------------------------------------------------
// Layers under a low precision

TEST(MixedPrecision, LayersComputeInTheLowTypeAndKeepFp32Masters) {
  manual_seed(testing::test_seed());
  Sequential net{Conv2d(1, 4, 3, {.padding = 1}), ReLU(), MaxPool2d(2), Flatten(), Linear(4 * 4 * 4, 3)};
  net.set_precision(Precision::kBF16);
  const Tensor x = Tensor::from_vector(testing::random_vector(2 * 64, 5), {2, 1, 8, 8});
  const Tensor y = net.forward(x);
  EXPECT_EQ(y.dtype(), DType::kBF16);
  net.set_input_grad(true);
  const Tensor dx = net.backward(Tensor::full(y.shape(), 0.25, DType::kF32));
  EXPECT_EQ(dx.dtype(), DType::kF32) << "the input gradient comes back in the input's type";
  for (Parameter* p : net.parameters()) {
    EXPECT_EQ(p->value.dtype(), DType::kF32) << p->name;
    EXPECT_EQ(p->grad.dtype(), DType::kF32) << p->name;
  }
  // A layer added later takes the container's precision.
  net.add(std::make_unique<Linear>(3, 2));
  EXPECT_EQ(net.forward(x).dtype(), DType::kBF16);
}

// ---------------------------------------------------------------------------------------------
// The Trainer

using testing::blobs;

// Passes everything through, except that the gradient of backward number `at` (counted over
// the module's life) is multiplied by infinity: an overflow of fp16 gradients, on demand.
class OverflowAt : public Module {
 public:
  explicit OverflowAt(int at) : at_(at) {}
  Tensor forward(const Tensor& x) override { return x; }
  Tensor backward(const Tensor& grad_output) override {
    if (++calls_ != at_) return grad_output;
    const Tensor inf = Tensor::full(grad_output.shape(), std::numeric_limits<double>::infinity(), DType::kF32);
    return ops::mul(grad_output, inf);
  }
  std::string describe() const override { return "OverflowAt(" + std::to_string(at_) + ")"; }

 private:
  int at_;
  int calls_ = 0;
};

Sequential make_net(std::uint64_t seed, int overflow_at) {
  manual_seed(seed);
  // The overflow sits after the first layer: its gradients turn non-finite, the later ones not.
  Sequential net{Linear(8, 16), ReLU()};
  net.add(std::make_unique<OverflowAt>(overflow_at));
  net.add(std::make_unique<Linear>(16, 16));
  net.add(std::make_unique<Tanh>());
  net.add(std::make_unique<Linear>(16, 3));
  return net;
}

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("gpudl_mixed_precision_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

TrainerOptions fp16_options() {
  TrainerOptions o;
  o.batch = 32;
  o.epochs = 3;
  o.seed = 7;
  o.log_every = 4;
  o.progress = false;
  o.record_step_losses = true;
  o.precision = Precision::kF16;
  o.loss_scaling.growth_interval = 5;  // several growths and a backoff within 24 steps
  return o;
}

TEST(MixedPrecisionTrainer, AnFp16OverflowSkipsThatStepHalvesTheScaleAndTrainingRecovers) {
  const data::TensorDataset train = blobs(256, 1), test = blobs(96, 2);
  Sequential net = make_net(3, 6);  // the 6th backward overflows
  Adam opt(net.parameters(), {.lr = 0.01});
  CrossEntropyLoss loss;
  TrainerOptions o = fp16_options();
  o.metrics = scratch("fp16.jsonl").string();
  // A snapshot of the first layer's weight after every step: the skipped step leaves it alone.
  std::vector<std::vector<float>> weights;
  Parameter* w = net.parameters()[0];
  o.after_step = [&] { weights.push_back(w->value.to_vector<float>()); };
  Trainer t(net, opt, loss, o);
  ASSERT_NE(t.loss_scaler(), nullptr);
  const float initial = t.loss_scaler()->scale();
  const FitResult r = t.fit(train, &test);
  ASSERT_EQ(weights.size(), 24u);
  EXPECT_EQ(weights[5], weights[4]) << "step 6 overflowed and must not have changed the weights";
  EXPECT_NE(weights[4], weights[3]);
  EXPECT_NE(weights[6], weights[5]) << "the step after the overflow trains again";
  const LossScaler& s = *t.loss_scaler();
  EXPECT_EQ(s.skipped_steps(), 1);
  // Steps 1-5 clean: one growth (x2); step 6 backs off (x0.5); steps 7-24: 18 clean, 3 growths.
  EXPECT_EQ(s.scale(), initial * 2.0f * 0.5f * 8.0f);
  EXPECT_EQ(s.clean_steps(), 3);
  for (float l : t.step_losses()) EXPECT_TRUE(std::isfinite(l));
  for (Parameter* p : net.parameters()) {
    for (float v : p->value.to_vector<float>()) ASSERT_TRUE(std::isfinite(v)) << p->name;
  }
  EXPECT_GT(r.final_test.accuracy, 0.8) << "fp16 training still learns the blobs";
  // The metrics say the precision, the scale and the skipped step.
  std::ifstream in(o.metrics);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  const json::Value rec = json::parse(last);
  EXPECT_EQ(rec["precision"].as_string(), "fp16");
  EXPECT_EQ(rec["skipped_steps"].as_double(), 1.0);
  EXPECT_EQ(rec["loss_scale"].as_double(), static_cast<double>(s.scale()));
}

TEST(MixedPrecisionTrainer, AResumedFp16RunContinuesWithTheSameScaleBitForBit) {
  const data::TensorDataset train = blobs(256, 3);
  std::vector<float> full;
  float full_scale = 0.0f;
  {
    Sequential net = make_net(4, 3);
    Adam opt(net.parameters(), {.lr = 0.01});
    CrossEntropyLoss loss;
    Trainer t(net, opt, loss, fp16_options());
    t.fit(train);
    full = t.step_losses();
    full_scale = t.loss_scaler()->scale();
  }
  ASSERT_EQ(full.size(), 24u);
  const fs::path ckpt = scratch("fp16.safetensors");
  float scale_at_stop = 0.0f;
  {
    Sequential net = make_net(4, 3);
    Adam opt(net.parameters(), {.lr = 0.01});
    CrossEntropyLoss loss;
    TrainerOptions o = fp16_options();
    o.checkpoint = ckpt.string();
    o.stop_after_steps = 11;  // after a backoff (step 3) and growths (8), mid-growth-interval
    Trainer t(net, opt, loss, o);
    t.fit(train);
    scale_at_stop = t.loss_scaler()->scale();
    EXPECT_EQ(t.loss_scaler()->clean_steps(), 3);
  }
  EXPECT_EQ(load_safetensors(ckpt.string()).metadata_value("precision"), "fp16");
  {
    Sequential net = make_net(99, 0);  // other weights, no overflow: all must come from the file
    Adam opt(net.parameters(), {.lr = 0.01});
    CrossEntropyLoss loss;
    TrainerOptions o = fp16_options();
    o.resume = ckpt.string();
    Trainer t(net, opt, loss, o);
    t.load_checkpoint(ckpt.string());
    EXPECT_EQ(t.loss_scaler()->scale(), scale_at_stop);
    EXPECT_EQ(t.loss_scaler()->clean_steps(), 3);
    EXPECT_EQ(t.loss_scaler()->skipped_steps(), 1);
    t.fit(train);
    ASSERT_EQ(t.step_losses().size(), 13u);
    for (std::size_t i = 0; i < 13; ++i) EXPECT_EQ(t.step_losses()[i], full[11 + i]) << "step " << 12 + i;
    EXPECT_EQ(t.loss_scaler()->scale(), full_scale);
  }
}

TEST(MixedPrecisionTrainer, Bf16TrainsWithoutALossScalerAndSaysSo) {
  const data::TensorDataset train = blobs(256, 5), test = blobs(96, 6);
  Sequential net = make_net(5, 0);
  Adam opt(net.parameters(), {.lr = 0.01});
  CrossEntropyLoss loss;
  TrainerOptions o = fp16_options();
  o.precision = Precision::kBF16;
  const fs::path ckpt = scratch("bf16.safetensors");
  o.checkpoint = ckpt.string();
  Trainer t(net, opt, loss, o);
  EXPECT_EQ(t.precision(), Precision::kBF16);
  EXPECT_EQ(net.precision(), Precision::kBF16);
  EXPECT_EQ(t.loss_scaler(), nullptr);
  const FitResult r = t.fit(train, &test);
  EXPECT_GT(r.final_test.accuracy, 0.8);
  const SafetensorsContents saved = load_safetensors(ckpt.string());
  EXPECT_EQ(saved.metadata_value("precision"), "bf16");
  EXPECT_EQ(saved.find("trainer.loss_scaler"), nullptr);
  // The masters are what a checkpoint holds: FP32.
  for (const auto& [name, tensor] : saved.tensors) {
    if (name.rfind("model.", 0) == 0) {
      EXPECT_EQ(tensor.dtype(), DType::kF32) << name;
    }
  }
}

// An export for inference holds the weights in the low type (half the bytes), loading casts
// them back into the FP32 masters, and a Trainer checkpoint loads the same way.
TEST(MixedPrecision, ExportsInALowTypeAndLoadsByCasting) {
  Sequential net = make_net(7, 0);
  const fs::path f32 = scratch("model_f32.safetensors"), bf16 = scratch("model_bf16.safetensors");
  export_model(net, f32.string());
  export_model(net, bf16.string(), DType::kBF16);
  const SafetensorsContents saved = load_safetensors(bf16.string());
  EXPECT_EQ(saved.metadata_value("dtype"), "bf16");
  for (const auto& [name, t] : saved.tensors) EXPECT_EQ(t.dtype(), DType::kBF16) << name;
  const auto bytes = [](const fs::path& p) { return static_cast<double>(fs::file_size(p)); };
  EXPECT_LT(bytes(bf16), 0.6 * bytes(f32));

  Sequential loaded = make_net(8, 0);  // other weights, all replaced
  load_model(loaded, bf16.string());
  const std::vector<Parameter*> a = net.parameters(), b = loaded.parameters();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i]->value.dtype(), DType::kF32);
    EXPECT_EQ(b[i]->value.to_vector<float>(), a[i]->value.cast(DType::kBF16).cast(DType::kF32).to_vector<float>());
  }
  // From a checkpoint: the exact FP32 masters.
  const fs::path ckpt = scratch("model_ckpt.safetensors");
  {
    Adam opt(net.parameters(), {.lr = 0.01});
    CrossEntropyLoss loss;
    TrainerOptions o = fp16_options();
    o.precision = Precision::kBF16;
    Trainer t(net, opt, loss, o);
    t.save_checkpoint(ckpt.string());
  }
  load_model(loaded, ckpt.string());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(b[i]->value.to_vector<float>(), a[i]->value.to_vector<float>());
  // The checkpoint's model exported without building the model: the same masters.
  const fs::path exported = scratch("model_from_ckpt.safetensors");
  export_checkpoint_model(ckpt.string(), exported.string());
  Sequential again = make_net(9, 0);
  load_model(again, exported.string());
  const std::vector<Parameter*> c = again.parameters();
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(c[i]->value.to_vector<float>(), a[i]->value.to_vector<float>());
  EXPECT_THROW(export_checkpoint_model(f32.string(), scratch("x.safetensors").string()), IoError);
  // Another kind of file is a one-line error naming it; a plain state_dict (no metadata) of
  // another model names the first entry that does not fit, and changes nothing.
  save_safetensors(scratch("other.safetensors").string(), {{"x", Tensor::zeros({2})}}, {{"format", "mine"}});
  try {
    load_model(loaded, scratch("other.safetensors").string());
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("other.safetensors: not a model export, a PyTorch state_dict or a checkpoint"),
              std::string::npos)
        << e.what();
  }
  save_safetensors(scratch("plain.safetensors").string(), {{"x", Tensor::zeros({2})}});
  const std::vector<float> before = b[0]->value.to_vector<float>();
  try {
    load_model(loaded, scratch("plain.safetensors").string());
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("plain.safetensors: no tensor '0.weight'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(b[0]->value.to_vector<float>(), before);
  EXPECT_THROW(export_model(net, scratch("bad.safetensors").string(), DType::kI32), ValueError);
}

TEST(MixedPrecisionTrainer, DefaultsToTheDevicesPrecision) {
  Sequential net = make_net(6, 0);
  SGD opt(net.parameters(), {.lr = 0.1});
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.progress = false;
  Trainer t(net, opt, loss, o);
  EXPECT_EQ(t.precision(), default_precision(Device::cpu()));
}

}  // namespace
}  // namespace gpudl
