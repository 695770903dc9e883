// libFuzzer target: the MNIST IDX readers (images and labels, plain and gzip) on any bytes.
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "gpudl/core/data/mnist.h"

namespace {

std::vector<std::uint8_t> idx(std::uint8_t kind, const std::vector<std::int32_t>& dims, std::size_t payload) {
  std::vector<std::uint8_t> out = {0, 0, 0x08, kind};
  for (std::int32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(d >> s));
  }
  for (std::size_t i = 0; i < payload; ++i) out.push_back(static_cast<std::uint8_t>(i * 37));
  return out;
}

void write_seeds(const std::string& dir) {
  const auto images = idx(3, {2, 3, 4}, 24), labels = idx(1, {5}, 5);
  gpudl::fuzz::write_file(dir + "/images.idx", images.data(), images.size());
  gpudl::fuzz::write_file(dir + "/labels.idx", labels.data(), labels.size());
  // The same images gzip-compressed, as MNIST is distributed.
  const std::string gz = dir + "/images.idx.gz";
  gzFile f = gzopen(gz.c_str(), "wb");
  gzwrite(f, images.data(), static_cast<unsigned>(images.size()));
  gzclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gpudl::fuzz::maybe_write_seeds(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  gpudl::fuzz::run_on_file(data, size, ".idx", [](const std::string& path) {
    const gpudl::Tensor t = gpudl::data::read_idx_images(path);
    if (t.ndim() != 3 || t.dtype() != gpudl::DType::kU8) gpudl::fuzz::inconsistent("images are not (N, rows, cols) u8");
  });
  gpudl::fuzz::run_on_file(data, size, ".idx", [](const std::string& path) {
    const gpudl::Tensor t = gpudl::data::read_idx_labels(path);
    if (t.ndim() != 1 || t.dtype() != gpudl::DType::kI64) gpudl::fuzz::inconsistent("labels are not (N) i64");
  });
  return 0;
}
