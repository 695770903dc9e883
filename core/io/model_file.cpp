// Model files: export in a chosen float type, loading with casts, from exports or checkpoints.
#include "gpudl/core/io/model_file.h"

#include <utility>
#include <vector>

#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/runtime/error.h"

namespace gpudl {

namespace {
constexpr const char* kModelFormat = "gpudl-model-1";
// What the Trainer writes (core/training/trainer.cpp): its model's entries carry this prefix.
constexpr const char* kCheckpointFormat = "gpudl-checkpoint-1";
constexpr const char* kCheckpointPrefix = "model.";
}  // namespace

void export_model(Module& model, const std::string& path, DType dtype) {
  if (!is_floating(dtype)) {
    throw ValueError(std::string("export_model: dtype ") + dtype_name(dtype) + " is not f32, bf16 or f16");
  }
  std::vector<NamedTensor> tensors;
  for (auto& [name, t] : model.state()) tensors.emplace_back(name, is_floating(t.dtype()) ? t.as(dtype) : t);
  save_safetensors(path, tensors, {{"format", kModelFormat}, {"dtype", dtype_name(dtype)}});
}

void load_model(Module& model, const std::string& path) {
  const SafetensorsContents file = load_safetensors(path);
  const std::string format = file.metadata_value("format");
  std::vector<NamedTensor> state;
  if (format == kModelFormat) {
    state = file.tensors;
  } else if (format == kCheckpointFormat) {
    const std::string prefix = kCheckpointPrefix;
    for (const auto& [name, t] : file.tensors) {
      if (name.rfind(prefix, 0) == 0) state.emplace_back(name.substr(prefix.size()), t);
    }
  } else {
    throw IoError(path + ": not a model export or a checkpoint (metadata format '" + format + "', expected '" +
                  kModelFormat + "' or '" + kCheckpointFormat + "')");
  }
  try {
    model.load_state(state);  // casts each tensor to the model's own type
  } catch (const ShapeError& e) {
    throw ShapeError(path + ": " + e.what());
  } catch (const ValueError& e) {
    throw ValueError(path + ": " + e.what());
  }
}

}  // namespace gpudl
