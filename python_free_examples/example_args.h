// Command-line parsing shared by the example drivers: --flag value pairs, --help, clear errors.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpudl/core/json.h"

namespace examples {

// Declares options with defaults and help text, then parses argv. Unknown options, missing
// values and malformed numbers throw std::invalid_argument with a one-line message.
class Args {
 public:
  Args(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  Args& option(const std::string& name, const std::string& default_value, const std::string& help) {
    order_.push_back(name);
    values_[name] = default_value;
    help_[name] = help;
    return *this;
  }

  // Prints help and exits 0 on --help.
  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        print_help();
        std::exit(0);
      }
      if (arg.rfind("--", 0) != 0 || values_.count(arg.substr(2)) == 0) {
        throw std::invalid_argument("unknown option " + arg + " (see --help)");
      }
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + arg);
      values_[arg.substr(2)] = argv[++i];
    }
  }

  const std::string& str(const std::string& name) const { return values_.at(name); }

  double number(const std::string& name) const {
    const std::string& text = values_.at(name);
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || !std::isfinite(v)) {
      throw std::invalid_argument("--" + name + ": '" + text + "' is not a number");
    }
    return v;
  }

  std::int64_t integer(const std::string& name, std::int64_t min = 0) const {
    const double v = number(name);
    if (v != std::floor(v) || v < static_cast<double>(min)) {
      throw std::invalid_argument("--" + name + ": expected a whole number >= " + std::to_string(min) + ", got " +
                                  values_.at(name));
    }
    return static_cast<std::int64_t>(v);
  }

  // An on/off option given as 1 or 0.
  bool boolean(const std::string& name) const {
    const std::string& text = values_.at(name);
    if (text != "0" && text != "1") throw std::invalid_argument("--" + name + ": expected 1 or 0, got '" + text + "'");
    return text == "1";
  }

  void print_help() const {
    std::printf("usage: %s [options]\n%s\n\n", program_.c_str(), summary_.c_str());
    for (const auto& name : order_) {
      std::printf("  --%-16s %s (default: %s)\n", name.c_str(), help_.at(name).c_str(),
                  values_.at(name).empty() ? "none" : values_.at(name).c_str());
    }
    std::printf("  --%-16s %s\n", "help", "this text");
  }

 private:
  std::string program_, summary_;
  std::vector<std::string> order_;
  std::map<std::string, std::string> values_, help_;
};

// The data folder: --data, else $GPUDL_DATA_DIR/<sub>, else ../shared/data/<sub>.
inline std::string data_dir(const Args& args, const std::string& sub) {
  if (!args.str("data").empty()) return args.str("data");
  if (const char* env = std::getenv("GPUDL_DATA_DIR"); env != nullptr && *env != '\0') {
    return std::string(env) + "/" + sub;
  }
  return "../shared/data/" + sub;
}

// JSON-lines metrics for the drivers that run their own loop (the Trainer writes its own):
// appends one record per write() to --metrics, or does nothing when it is empty.
class MetricsFile {
 public:
  // Throws std::runtime_error naming the file when it cannot be opened.
  explicit MetricsFile(const std::string& path) {
    if (path.empty()) return;
    out_.open(path, std::ios::app);
    if (!out_) throw std::runtime_error(path + ": cannot open the metrics file for writing");
    open_ = true;
  }
  void write(const gpudl::json::Object& record) {
    if (open_) out_ << gpudl::json::dump(gpudl::json::Value(record)) << '\n' << std::flush;
  }

 private:
  std::ofstream out_;
  bool open_ = false;
};

}  // namespace examples
