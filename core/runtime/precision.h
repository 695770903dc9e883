// Precision policies (fp32, tf32, bf16, fp16): what matrix products, convolutions and the
// activations between layers compute in and are stored as, and which devices can do each.
#pragma once

#include <string>
#include <string_view>

#include "gpudl/core/runtime/device.h"
#include "gpudl/kernels/dtype.h"

namespace gpudl {

// kF32: everything FP32. kTF32: FP32 storage; matrix products and convolutions may round their
// operands to TF32 on tensor cores (the CPU computes these in FP32). kBF16 / kF16: matrix
// products and convolutions take bf16 / fp16 operands with FP32 accumulation, and the
// activations between layers are stored in that type; parameters stay FP32 masters, gradients
// accumulate in FP32, and losses, normalisation statistics, reductions and recurrent cell
// state are computed in FP32. kF16 needs loss scaling (the Trainer does it).
enum class Precision : unsigned char { kF32, kTF32, kBF16, kF16 };

// "fp32", "tf32", "bf16", "fp16".
const char* precision_name(Precision p);
// The inverse of precision_name. Throws ValueError naming `text` and the accepted names.
Precision parse_precision(std::string_view text);

// The type activations are stored in: kBF16, kF16, or kF32 for fp32 and tf32.
DType activation_dtype(Precision p);
// Whether FP32 matrix products and convolutions may use TF32.
inline bool allows_tf32(Precision p) { return p == Precision::kTF32; }

// bf16 on a GPU of compute capability 8.0 or newer, else fp32 (the CPU included).
Precision default_precision(Device device);
// Throws DeviceError naming the precision, the device and what it lacks when `device` cannot
// run `p` (tf32 and bf16 need compute capability 8.0, fp16 6.0). Every precision runs on the
// CPU: bf16/fp16 there are stored in that type and computed in FP32, as on the GPU.
void check_precision(Precision p, Device device);
// The same rule on its own, for a GPU of compute capability `capability` (major * 10 + minor):
// "" when it can run `p`, else the one-line message check_precision throws, naming `where`
// ("cuda:0 (Tesla T4)").
std::string precision_unsupported(Precision p, int capability, const std::string& where);

}  // namespace gpudl
