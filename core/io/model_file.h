// Model files for inference: a trained model's weights alone, in FP32 or a low type, and back.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/runtime/module.h"

namespace gpudl {

// Writes `model`'s state (parameters and buffers by their checkpoint names, no optimizer state
// or training progress) to a safetensors file at `path`, atomically as checkpoints are. Its
// floating-point tensors are stored in `dtype` (f32, or bf16/f16 for half the bytes, rounded to
// nearest even); integer buffers as they are. Metadata: "format" "gpudl-model-1", "dtype".
// The names are PyTorch's (docs/interop.md), so the equivalent torch.nn model takes the f32
// file with load_state_dict(safetensors.torch.load_file(path)). Throws ValueError for another
// dtype, IoError as save_safetensors does. `metadata` adds entries of the caller's (what
// layers/architecture.h's export_model adds to make the file self-describing).
void export_model(Module& model, const std::string& path, DType dtype = DType::kF32,
                  const std::vector<std::pair<std::string, std::string>>& metadata = {});

// Loads an export_model file, a PyTorch state_dict saved with safetensors.torch.save_file, or
// the model of a Trainer checkpoint into `model`, casting each tensor to the type the model
// keeps it in (FP32 masters). Strict, and all or nothing: every tensor of the model must be in
// the file with its shape (batch norm's num_batches_tracked may be missing, as in files made
// before it existed), and every tensor of the file must be the model's. Throws IoError naming
// the file when it is unreadable or of another kind, ValueError/ShapeError naming the file and
// the first entry that is missing, extra or does not fit, and then leaves the model unchanged.
void load_model(Module& model, const std::string& path);
// The same from a file's contents already read (`path` names it in messages).
void load_model(Module& model, const SafetensorsContents& file, const std::string& path);

// Writes the model of a Trainer checkpoint as export_model would (the same names, so PyTorch
// takes it too), without building the model. Throws IoError for an unreadable file or one that
// is not a checkpoint, ValueError for a dtype that is not f32, bf16 or f16.
void export_checkpoint_model(const std::string& checkpoint, const std::string& path, DType dtype = DType::kF32);

}  // namespace gpudl
