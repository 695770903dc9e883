// libFuzzer target: the CIFAR-10 binary-batch reader on any bytes.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "gpudl/core/data/cifar.h"

namespace {

void write_seeds(const std::string& dir) {
  std::vector<std::uint8_t> batch;
  for (int r = 0; r < 2; ++r) {
    batch.push_back(static_cast<std::uint8_t>(r * 7));  // label
    for (int i = 0; i < 3072; ++i) batch.push_back(static_cast<std::uint8_t>(i * 13 + r));
  }
  gpudl::fuzz::write_file(dir + "/two_records.bin", batch.data(), batch.size());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gpudl::fuzz::maybe_write_seeds(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  gpudl::fuzz::run_on_file(data, size, ".bin", [size](const std::string& path) {
    const gpudl::data::TensorDataset d = gpudl::data::read_cifar10_batch(path);
    const auto n = static_cast<std::int64_t>(size / 3073);
    if (d.size() != n || d.inputs().shape() != gpudl::Shape{n, 3, 32, 32}) {
      gpudl::fuzz::inconsistent("shape does not match the record count");
    }
    for (std::int64_t label : d.labels().to_vector<std::int64_t>()) {
      if (label < 0 || label > 9) gpudl::fuzz::inconsistent("label outside 0..9");
    }
  });
  return 0;
}
