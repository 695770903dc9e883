// Precision policies: names, the default per device, and which devices can run which.
#include "gpudl/core/runtime/precision.h"

#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/core/runtime/error.h"

namespace gpudl {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kF32: return "fp32";
    case Precision::kTF32: return "tf32";
    case Precision::kBF16: return "bf16";
    case Precision::kF16: return "fp16";
  }
  return "?";
}

Precision parse_precision(std::string_view text) {
  for (Precision p : {Precision::kF32, Precision::kTF32, Precision::kBF16, Precision::kF16}) {
    if (text == precision_name(p)) return p;
  }
  throw ValueError("unknown precision \"" + std::string(text) + "\" (expected fp32, tf32, bf16 or fp16)");
}

DType activation_dtype(Precision p) {
  switch (p) {
    case Precision::kBF16: return DType::kBF16;
    case Precision::kF16: return DType::kF16;
    case Precision::kF32:
    case Precision::kTF32: return DType::kF32;
  }
  return DType::kF32;
}

namespace {
// The compute capability (major * 10 + minor) a precision needs on a GPU.
int needed_capability(Precision p) {
  switch (p) {
    case Precision::kF32: return 0;
    case Precision::kF16: return 60;
    case Precision::kTF32:
    case Precision::kBF16: return 80;
  }
  return 0;
}
}  // namespace

Precision default_precision(Device device) {
  if (device.is_cuda() && cuda_api::compute_capability(device.index()) >= 80) return Precision::kBF16;
  return Precision::kF32;
}

std::string precision_unsupported(Precision p, int capability, const std::string& where) {
  const int need = needed_capability(p);
  if (capability >= need) return "";
  return std::string("precision ") + precision_name(p) + " needs a GPU of compute capability " +
         std::to_string(need / 10) + "." + std::to_string(need % 10) + " or newer; " + where + " is " +
         std::to_string(capability / 10) + "." + std::to_string(capability % 10);
}

void check_precision(Precision p, Device device) {
  if (device.is_cpu()) return;
  const std::string why = precision_unsupported(p, cuda_api::compute_capability(device.index()),
                                                device.str() + " (" + device.name() + ")");
  if (!why.empty()) throw DeviceError(why);
}

}  // namespace gpudl
