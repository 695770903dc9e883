// Model files: export in a chosen float type, loading with casts, from exports, PyTorch
// state_dicts or checkpoints.
#include "gpudl/core/io/model_file.h"

#include <map>
#include <set>
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
// What safetensors.torch.save_file writes (files without metadata are taken as state_dicts too).
constexpr const char* kPyTorchFormat = "pt";

}  // namespace

void export_model(Module& model, const std::string& path, DType dtype,
                  const std::vector<std::pair<std::string, std::string>>& metadata) {
  if (!is_floating(dtype)) {
    throw ValueError(std::string("export_model: dtype ") + dtype_name(dtype) + " is not f32, bf16 or f16");
  }
  std::vector<NamedTensor> tensors;
  for (auto& [name, t] : model.state()) tensors.emplace_back(name, is_floating(t.dtype()) ? t.as(dtype) : t);
  std::vector<std::pair<std::string, std::string>> meta = {{"format", kModelFormat}, {"dtype", dtype_name(dtype)}};
  meta.insert(meta.end(), metadata.begin(), metadata.end());
  save_safetensors(path, tensors, meta);
}

namespace {

// The model's entries of a file of any of those kinds, by the names the model gives them.
std::vector<NamedTensor> model_entries(const std::string& path, const SafetensorsContents& file) {
  const std::string format = file.metadata_value("format");
  if (format == kModelFormat || format == kPyTorchFormat || format.empty()) return file.tensors;
  if (format != kCheckpointFormat) {
    throw IoError(path + ": not a model export, a PyTorch state_dict or a checkpoint (metadata format '" + format +
                  "', expected '" + kModelFormat + "', '" + kPyTorchFormat + "' or '" + kCheckpointFormat + "')");
  }
  std::vector<NamedTensor> state;
  const std::string prefix = kCheckpointPrefix;
  for (const auto& [name, t] : file.tensors) {
    if (name.rfind(prefix, 0) == 0) state.emplace_back(name.substr(prefix.size()), t);
  }
  return state;
}

}  // namespace

void load_model(Module& model, const std::string& path) { load_model(model, load_safetensors(path), path); }

void load_model(Module& model, const SafetensorsContents& file, const std::string& path) {
  const std::vector<NamedTensor> state = model_entries(path, file);
  // Every entry is checked before any is copied, so a file that does not fit changes nothing.
  std::map<std::string, const Tensor*> in_file;
  for (const auto& [name, t] : state) in_file[name] = &t;
  std::set<std::string> in_model;
  for (const auto& [name, t] : model.state()) {
    in_model.insert(name);
    const auto it = in_file.find(name);
    if (it == in_file.end()) {
      if (name.ends_with("num_batches_tracked")) continue;  // older files; Module::load_state allows it
      throw ValueError(path + ": no tensor '" + name + "' for " + t.shape().str() + " of the model (" +
                       std::to_string(state.size()) + " tensors in the file; is it another architecture?)");
    }
    if (it->second->shape() != t.shape()) {
      throw ShapeError(path + ": '" + name + "' is " + it->second->shape().str() + " in the file but " +
                       t.shape().str() + " in the model");
    }
    const bool float_entry = is_floating(t.dtype());
    if (float_entry != is_floating(it->second->dtype())) {
      throw ValueError(path + ": '" + name + "' is " + dtype_name(it->second->dtype()) + " in the file but " +
                       dtype_name(t.dtype()) + " in the model");
    }
  }
  for (const auto& [name, t] : state) {
    if (in_model.count(name) == 0) {
      throw ValueError(path + ": the model has no parameter or buffer '" + name + "' " + t.shape().str() +
                       " (is the file of another architecture?)");
    }
  }
  model.load_state(state);  // casts each tensor to the model's own type
}

void export_checkpoint_model(const std::string& checkpoint, const std::string& path, DType dtype) {
  if (!is_floating(dtype)) {
    throw ValueError(std::string("export_checkpoint_model: dtype ") + dtype_name(dtype) + " is not f32, bf16 or f16");
  }
  const SafetensorsContents file = load_safetensors(checkpoint);
  if (file.metadata_value("format") != kCheckpointFormat) {
    throw IoError(checkpoint + ": not a Trainer checkpoint (metadata format '" + file.metadata_value("format") +
                  "', expected '" + kCheckpointFormat + "')");
  }
  std::vector<NamedTensor> tensors;
  for (auto& [name, t] : model_entries(checkpoint, file)) {
    tensors.emplace_back(name, is_floating(t.dtype()) ? t.as(dtype) : t);
  }
  std::vector<std::pair<std::string, std::string>> meta = {{"format", kModelFormat}, {"dtype", dtype_name(dtype)}};
  // What made the checkpoint self-describing (layers/architecture.h) goes along.
  for (const auto& [key, value] : file.metadata) {
    if (key == "architecture" || key == "classes" || key == "mean" || key == "stddev" || key == "input_shape") {
      meta.emplace_back(key, value);
    }
  }
  save_safetensors(path, tensors, meta);
}

}  // namespace gpudl
