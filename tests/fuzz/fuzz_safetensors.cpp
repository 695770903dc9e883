// libFuzzer target: the safetensors checkpoint reader (header JSON and tensor table) on any bytes.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "gpudl/core/io/safetensors.h"

namespace {

void write_seeds(const std::string& dir) {
  using gpudl::DType;
  using gpudl::Tensor;
  const std::vector<gpudl::NamedTensor> tensors = {
      {"weight", Tensor::from_vector(std::vector<float>{1.0f, -2.0f, 0.5f, 4.0f}, {2, 2})},
      {"bias", Tensor::from_vector(std::vector<float>{0.25f}, {1})},
      {"step", Tensor::from_vector(std::vector<std::int64_t>{7}, {1})},
      {"vocabulary", Tensor::from_vector(std::vector<std::uint8_t>{'a', 'b'}, {2})},
      {"scalar", Tensor::zeros({}, DType::kF32)}};
  gpudl::save_safetensors(dir + "/model.safetensors", tensors, {{"format", "gpudl-checkpoint-1"}});
  gpudl::save_safetensors(dir + "/empty.safetensors", {});
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gpudl::fuzz::maybe_write_seeds(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  gpudl::fuzz::run_on_file(data, size, ".safetensors", [size](const std::string& path) {
    const gpudl::SafetensorsContents c = gpudl::load_safetensors(path);
    std::size_t bytes = 0;
    for (const auto& [name, t] : c.tensors) {
      if (name.empty() || !t.defined() || !t.device().is_cpu()) gpudl::fuzz::inconsistent("bad tensor entry");
      bytes += t.nbytes();
    }
    // Every byte of the data section belongs to exactly one tensor, so the tensors cannot hold
    // more than the file.
    if (bytes > size) gpudl::fuzz::inconsistent("tensors larger than the file");
  });
  return 0;
}
