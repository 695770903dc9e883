// Training helpers shared by the example drivers: file checks, MNIST loading and the closing report.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "example_args.h"
#include "gpudl/gpudl.h"

namespace examples {

// Train and test MNIST from --data (or the default folders), --limit applied to the training
// set, both normalised with the usual MNIST statistics (mean 0.1307, sd 0.3081 of the [0, 1]
// pixels). Throws IoError naming the file at fault.
inline std::pair<gpudl::data::TensorDataset, gpudl::data::TensorDataset> load_mnist(const Args& args) {
  using namespace gpudl;
  const std::int64_t limit = args.integer("limit");  // before the files, so a bad value costs no reading
  const std::string dir = data_dir(args, "mnist");
  data::TensorDataset train = data::mnist(dir, data::Split::kTrain);
  data::TensorDataset test = data::mnist(dir, data::Split::kTest);
  if (limit > 0) train = train.take(std::min(limit, train.size()));
  train.normalize(0.1307f, 0.3081f);
  test.normalize(0.1307f, 0.3081f);
  return {std::move(train), std::move(test)};
}

// Help for the --precision flag every driver has.
inline constexpr const char* kPrecisionHelp =
    "fp32, tf32, bf16 or fp16; auto: bf16 on a GPU of compute capability 8.0 or newer, fp32 elsewhere";

// The --precision flag on `device`. Throws std::invalid_argument naming the flag for a name it
// does not know, DeviceError naming the device for a precision that device cannot run.
inline gpudl::Precision precision(const Args& args, gpudl::Device device) {
  const std::string& text = args.choice("precision", {"auto", "fp32", "tf32", "bf16", "fp16"});
  const gpudl::Precision p = text == "auto" ? gpudl::default_precision(device) : gpudl::parse_precision(text);
  gpudl::check_precision(p, device);
  return p;
}

// The --precision flag of a driver with its own training loop: as precision(), but fp16, which
// needs the Trainer's loss scaling, is refused with a one-line error saying so.
inline gpudl::Precision precision_without_scaling(const Args& args, gpudl::Device device) {
  const gpudl::Precision p = precision(args, device);
  if (p == gpudl::Precision::kF16) {
    throw std::invalid_argument("--precision: fp16 needs loss scaling, which only the drivers on the Trainer do; "
                                "use bf16");
  }
  return p;
}

// The files a Trainer run touches, checked before any data are read: --metrics and
// --checkpoint must be writable where they point, --resume must be readable. Throws
// std::invalid_argument naming the flag.
inline void check_trainer_files(const Args& args) {
  check_writable(args, "metrics");
  check_writable(args, "checkpoint");
  check_readable(args, "resume");
  if (!args.str("tensorboard").empty()) check_writable_folder("tensorboard", args.str("tensorboard"));
  check_writable(args, "export-onnx");
  if (!args.str("export-onnx").empty() && !gpudl::onnx_available()) {
    throw std::invalid_argument(
        "--export-onnx: this libgpudl was built without ONNX (apt-get install libonnx-dev libprotobuf-dev, then "
        "configure again)");
  }
  const double ema = args.number("ema");
  args.require(ema >= 0.0 && ema < 1.0, "ema", "a decay in [0, 1) (0: no average)");
}

// Help for the --ema flag of the Trainer drivers, and its value once checked.
inline constexpr const char* kEmaHelp =
    "decay of an exponential moving average of the weights (per step), which the test results, the final "
    "model and --export use and checkpoints keep; 0: none (0.999 is common)";
inline double ema_decay(const Args& args) { return args.number("ema"); }  // checked by check_trainer_files

// Help for the --accumulate flag of the Trainer drivers, and its value once checked: a whole
// number >= 1, else std::invalid_argument naming the flag.
inline constexpr const char* kAccumulateHelp =
    "micro-batches of --batch summed per optimizer step (effective batch K x batch)";
inline std::int64_t accumulate(const Args& args) { return args.integer("accumulate", 1); }

// For a driver's run line: ", effective batch 128 per step (4 x 32)" with accumulation (per
// rank under mpirun), "" without.
inline std::string effective_batch(std::int64_t batch, std::int64_t accumulate) {
  if (accumulate <= 1) return "";
  return ", effective batch " + std::to_string(batch * accumulate) + " per step" +
         (gpudl::dist::world_size() > 1 ? " on each rank" : "") + " (" + std::to_string(accumulate) + " x " +
         std::to_string(batch) + ")";
}

// Help for the --tensorboard flag of the Trainer drivers.
inline constexpr const char* kTensorBoardHelp =
    "folder for TensorBoard event files (made if missing): loss, accuracy, learning rate, samples/s and test "
    "metrics as they come, and the run's settings as text; view with `tensorboard --logdir FOLDER`";

// Help for the --export flag of the drivers that have it.
inline constexpr const char* kExportHelp =
    "after training, write the model's weights for inference to this safetensors file, in the run's "
    "activation type (bf16 under --precision bf16, f16 under fp16, else f32)";

// --export: writes `model` (see gpudl::export_model) in the activation type of `precision`,
// self-describing with `info` (layers/architecture.h), and says where. A no-op when the flag is
// empty. Throws IoError naming the file.
inline void export_if_asked(const Args& args, gpudl::Module& model, gpudl::Precision precision,
                            const gpudl::ModelInfo& info = {}) {
  const std::string& path = args.str("export");
  if (path.empty()) return;
  const gpudl::DType dtype = gpudl::activation_dtype(precision);
  gpudl::export_model(model, path, info, dtype);
  std::printf("exported the model (%s) to %s\n", gpudl::dtype_name(dtype), path.c_str());
}

// Help for the --export-onnx flag of the Trainer drivers.
inline constexpr const char* kExportOnnxHelp =
    "after training, write the model's inference graph to this ONNX file (opset 17, f32 weights, any batch size; "
    "it takes inputs prepared as in training, normalised alike)";

// --export-onnx: writes `model`'s inference graph for inputs of `input_shape` (-1: any size) of
// `input_dtype` (see gpudl::export_onnx) and says where; under mpirun rank 0 alone writes. A
// no-op when the flag is empty. Throws IoError naming the file.
inline void export_onnx_if_asked(const Args& args, gpudl::Module& model, std::vector<std::int64_t> input_shape,
                                 gpudl::DType input_dtype = gpudl::DType::kF32) {
  const std::string& path = args.str("export-onnx");
  if (path.empty() || gpudl::dist::rank() != 0) return;
  gpudl::export_onnx(model, path, {.input_shape = std::move(input_shape), .input_dtype = input_dtype});
  std::printf("exported the model's inference graph (ONNX opset 17) to %s\n", path.c_str());
}

// The processes training together: the job's under mpirun (the Trainer's data parallelism is
// on then, each taking `batch` samples of every step), else 1.
inline int ranks() { return gpudl::dist::world_size(); }

// Optimizer steps in one epoch of `train` at `batch` samples per rank, `accumulate` batches a
// step (the epoch's last step may have fewer), for the schedules.
inline std::int64_t steps_per_epoch(const gpudl::data::TensorDataset& train, std::int64_t batch,
                                    std::int64_t accumulate = 1, bool drop_last = false) {
  const std::int64_t batches =
      gpudl::data::DataLoader(train, {.batch = batch, .shuffle = false, .drop_last = drop_last, .world = ranks()})
          .batches_per_epoch();
  return (batches + accumulate - 1) / accumulate;
}

// Fits, prints the test result, and writes the final metrics record (test accuracy and loss,
// seconds, steps, device, plus `extra`).
// Train and Test: TensorDatasets (fit batches them) or BatchSources (a streaming loader).
template <class Train, class Test>
gpudl::FitResult fit_and_report(gpudl::Trainer& trainer, Train& train, Test& test, gpudl::Device device,
                                gpudl::json::Object extra = {}) {
  const auto start = std::chrono::steady_clock::now();
  const gpudl::FitResult r = trainer.fit(train, &test);
  // The averaged weights were tested: they are the model from here on (TTA, --export).
  if (gpudl::WeightAverage* average = trainer.weight_average()) average->copy_to_model();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string where = trainer.world_size() > 1 ? " x " + std::to_string(trainer.world_size()) + " ranks" : "";
  std::printf("test accuracy %.2f%%, test loss %.4f, %lld steps in %.1f s on %s%s in %s\n",
              100.0 * r.final_test.accuracy, r.final_test.loss, static_cast<long long>(r.steps), seconds,
              device.str().c_str(), where.c_str(), gpudl::precision_name(trainer.precision()));
  gpudl::json::Object record{{"event", "final"},
                             {"test_accuracy", r.final_test.accuracy},
                             {"test_loss", r.final_test.loss},
                             {"seconds", seconds},
                             {"steps", r.steps},
                             {"device", device.str()},
                             {"ranks", trainer.world_size()},
                             {"precision", gpudl::precision_name(trainer.precision())}};
  if (const gpudl::LossScaler* scaler = trainer.loss_scaler()) {
    record.emplace_back("loss_scale", static_cast<double>(scaler->scale()));
    record.emplace_back("skipped_steps", scaler->skipped_steps());
  }
  for (auto& member : extra) record.push_back(std::move(member));
  trainer.write_metrics(record);
  return r;
}

}  // namespace examples
