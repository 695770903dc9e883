// libFuzzer target: the character-corpus reader (CharCorpus::from_file) on any bytes.
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "gpudl/core/data/text.h"

namespace {

void write_seeds(const std::string& dir) {
  const std::string text = "First Citizen:\nBefore we proceed any further, hear me speak.\n";
  gpudl::fuzz::write_file(dir + "/text.txt", reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gpudl::fuzz::maybe_write_seeds(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  gpudl::fuzz::run_on_file(data, size, ".txt", [data, size](const std::string& path) {
    const gpudl::data::CharCorpus c = gpudl::data::CharCorpus::from_file(path);
    if (c.size() != static_cast<std::int64_t>(size)) gpudl::fuzz::inconsistent("ids do not cover every byte");
    for (std::int32_t id : c.ids()) {
      if (id < 0 || id >= c.vocab_size()) gpudl::fuzz::inconsistent("id outside the vocabulary");
    }
    if (c.decode(c.ids()) != std::string(reinterpret_cast<const char*>(data), size)) {
      gpudl::fuzz::inconsistent("decoding the ids does not give the file back");
    }
  });
  return 0;
}
