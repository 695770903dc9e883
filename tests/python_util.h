// Helpers for tests that write files and run Python (PyTorch, TensorBoard's reader) from the
// build's virtual environment (scripts/pyenv.sh): scratch folders, finding Python, quoting,
// running a script with its output kept.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>

namespace gpudl::testing {

// A fresh folder under GoogleTest's temporary folder, removed with everything in it when the
// object goes: one per test keeps their files apart.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix) {
    std::string tmpl = ::testing::TempDir() + prefix + "_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// `s` as one word for sh.
inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// $GPUDL_PYTHON, else the build's virtual environment (GPUDL_PYTHON, set by tests/CMakeLists.txt).
inline std::string python() {
  if (const char* env = std::getenv("GPUDL_PYTHON"); env != nullptr && *env != '\0') return env;
#ifdef GPUDL_PYTHON
  return GPUDL_PYTHON;
#else
  return "";
#endif
}

// Why python() cannot run `imports` (an import statement), or "" when it can.
inline std::string python_missing(const std::string& imports) {
  const std::string hint = "; run scripts/pyenv.sh BUILD_DIR (or set GPUDL_PYTHON) for the tests that run Python";
  const std::string py = python();
  if (py.empty()) return "no Python configured" + hint;
  if (py.find('/') != std::string::npos && !std::filesystem::exists(py)) return py + " does not exist" + hint;
  if (std::system((shell_quote(py) + " -c " + shell_quote(imports) + " >/dev/null 2>&1").c_str()) != 0) {
    return py + " cannot run '" + imports + "'" + hint;
  }
  return "";
}

// Runs `python() script args` with stdout and stderr into `log`: its exit status and the log.
inline std::pair<int, std::string> run_python(const std::string& script, const std::string& args,
                                              const std::string& log) {
  const std::string line =
      shell_quote(python()) + " " + shell_quote(script) + " " + args + " > " + shell_quote(log) + " 2>&1";
  const int status = std::system(line.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(log)};
}

}  // namespace gpudl::testing
