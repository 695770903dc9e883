// Model files for inference: a trained model's weights alone, in FP32 or a low type, and back.
#pragma once

#include <string>

#include "gpudl/core/runtime/module.h"

namespace gpudl {

// Writes `model`'s state (parameters and buffers by their checkpoint names, no optimizer state
// or training progress) to a safetensors file at `path`, atomically as checkpoints are. Its
// floating-point tensors are stored in `dtype` (f32, or bf16/f16 for half the bytes, rounded to
// nearest even); integer buffers as they are. Metadata: "format" "gpudl-model-1", "dtype".
// Throws ValueError for another dtype, IoError as save_safetensors does.
void export_model(Module& model, const std::string& path, DType dtype = DType::kF32);

// Loads an export_model file, or the model of a Trainer checkpoint, into `model`, casting each
// tensor to the type the model keeps it in (FP32 masters). Throws IoError naming the file when
// it is unreadable or neither kind of file, ValueError/ShapeError naming an entry that is
// missing or does not fit.
void load_model(Module& model, const std::string& path);

}  // namespace gpudl
