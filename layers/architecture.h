// Self-describing models: every layer writes its configuration as JSON (Module::config), a
// registry rebuilds layers from it, and model files and checkpoints that carry it, with the
// class names and input normalisation, load back with no code (load_model(path)).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gpudl/core/io/json.h"
#include "gpudl/core/io/model_file.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

// What a trained model needs beside its weights to be used: what its outputs mean and what its
// inputs must look like.
struct ModelInfo {
  std::vector<std::string> classes;        // output i's name; empty: unnamed
  std::vector<float> mean, stddev;         // per-channel normalisation of [0, 1] pixels; empty: none
  std::vector<std::int64_t> input_shape;   // one sample's shape ({3, 32, 32}); empty: unknown
};

// The model's architecture as JSON ({"type": "Sequential", "children": [...]}): throws
// ValueError naming the first module that cannot describe itself.
json::Value architecture_of(const Module& model);

// Builds an untrained module from architecture_of's JSON (parameters freshly initialised, on
// the CPU). Throws ValueError naming the entry at fault: an unknown type, a missing or
// mistyped field.
std::unique_ptr<Module> build_module(const json::Value& architecture);

// Makes build_module build `type` with `factory` too: how a user's own module (whose config()
// writes {"type": type, ...}) joins. A registered name replaces the built-in one.
void register_module(const std::string& type,
                     std::function<std::unique_ptr<Module>(const json::Value& config)> factory);

// The safetensors metadata entries that make a file self-describing: "architecture" (when the
// model can describe itself), "classes", "mean", "stddev" and "input_shape" (when known).
// Throws nothing for a model that cannot describe itself: that file then needs code to load.
std::vector<std::pair<std::string, std::string>> model_metadata(const Module& model, const ModelInfo& info);

// Reads ModelInfo back from such metadata (missing entries stay empty). Throws ValueError
// naming `path` and the entry when one is malformed.
ModelInfo model_info_from(const std::string& path, const std::vector<std::pair<std::string, std::string>>& metadata);

// export_model (core/io/model_file.h) with model_metadata(model, info) in the file, so that
// load_model(path) and the predict driver can use it with no code.
void export_model(Module& model, const std::string& path, const ModelInfo& info, DType dtype = DType::kF32);

// A model rebuilt from a self-describing file, in eval mode on the CPU, and what it came with.
struct LoadedModel {
  std::unique_ptr<Module> model;
  ModelInfo info;
};

// Rebuilds the model that export_model (with ModelInfo) or a Trainer checkpoint (with
// TrainerOptions::model_info) saved, weights and buffers included. Throws IoError naming
// `path` for an unreadable file or one without an architecture (written by code that did not
// describe the model, or by an older libgpudl: build the model in code and use
// load_model(model, path) then), and as build_module and load_model(model, path) do.
LoadedModel load_model(const std::string& path);

}  // namespace gpudl
