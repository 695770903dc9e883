// Command-line parsing shared by the example drivers: --flag value pairs read by CLI11, --help, one-line errors.
#pragma once

#include <CLI/CLI.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "gpudl/core/dist/dist.h"
#include "gpudl/core/io/json.h"

namespace examples {

// Declares options with defaults and help text, then parses argv with CLI11. Every value is
// kept as text and converted by the typed getters, so each driver decides its own ranges; the
// drivers call the getters at the top of main so that a bad value is reported before any data
// is read. Unknown options, missing values and malformed numbers throw std::invalid_argument
// with a one-line message naming the flag and the value.
class Args {
 public:
  Args(std::string program, const std::string& summary)
      : program_(std::move(program)), app_(std::make_unique<CLI::App>(summary, program_)) {
    app_->set_help_flag("-h,--help", "print this text and exit");
    // Leftovers are turned into our own message below instead of CLI11's multi-line one.
    app_->allow_extras();
    app_->get_formatter()->column_width(34);
  }
  // CLI11 keeps pointers into values_, so an Args stays where it was made.
  Args(const Args&) = delete;
  Args& operator=(const Args&) = delete;

  Args& option(const std::string& name, const std::string& default_value, const std::string& help) {
    std::string& slot = values_[name];
    slot = default_value;
    app_->add_option("--" + name, slot, help + " (default: " + (default_value.empty() ? "none" : default_value) + ")")
        ->type_name("VALUE")
        // As before CLI11, a flag given twice takes its last value (scripts append overrides).
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    return *this;
  }

  // Declares positional arguments: the words that are neither options nor their values (and
  // every word after "--"), kept in order under `name` in the help. Without it such a word is
  // an error.
  Args& positional(const std::string& name, const std::string& help) {
    app_->add_option(name, positionals_, help)->type_name("");
    return *this;
  }
  const std::vector<std::string>& positionals() const { return positionals_; }

  // Prints help and exits 0 on --help or -h. Throws std::invalid_argument for an unknown
  // option, a stray argument or a flag without its value.
  void parse(int argc, char** argv) {
    // Under mpirun the run's reports are rank 0's; the others' would repeat them line by line.
    if (gpudl::dist::launch_info().rank != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) {
      std::fprintf(stderr, "cannot silence stdout of rank %d\n", gpudl::dist::launch_info().rank);
    }
    try {
      app_->parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
      print_help();
      std::exit(0);
    } catch (const CLI::ArgumentMismatch& e) {
      // CLI11 says "--seed: 1 required VALUE missing"; only a missing value gets here since
      // repeats take the last value.
      const std::string what = e.what();
      const std::size_t colon = what.find(':');
      if (colon != std::string::npos && what.find("missing") != std::string::npos) {
        throw std::invalid_argument("missing value after " + what.substr(0, colon));
      }
      throw std::invalid_argument(what);
    } catch (const CLI::ParseError& e) {
      throw std::invalid_argument(e.what());
    }
    const std::vector<std::string> rest = app_->remaining();
    if (!rest.empty()) {
      const std::string& first = rest.front();
      if (first.rfind('-', 0) == 0) throw std::invalid_argument("unknown option " + first + " (see --help)");
      throw std::invalid_argument("unexpected argument '" + first + "' (options are --name value; see --help)");
    }
  }

  const std::string& str(const std::string& name) const { return value(name); }

  // A finite number. Throws std::invalid_argument naming the flag and the text otherwise.
  double number(const std::string& name) const {
    const std::string& text = value(name);
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (text.empty() || used != text.size() || !std::isfinite(v)) {
      throw std::invalid_argument("--" + name + ": '" + text + "' is not a number");
    }
    return v;
  }

  // A whole number written in decimal digits (an optional leading '-') within [min, max]:
  // "3.5", "1e3" and values past the 64-bit range are errors, never rounded.
  std::int64_t integer(const std::string& name, std::int64_t min = 0,
                       std::int64_t max = std::numeric_limits<std::int64_t>::max()) const {
    const std::string& text = value(name);
    std::int64_t v = 0;
    const std::size_t start = text.rfind('-', 0) == 0 ? 1 : 0;
    if (!digits_only(text, start) || !parse_whole(text, v) || v < min || v > max) {
      throw std::invalid_argument("--" + name + ": expected a whole number " + range_text(min, max) + ", got '" +
                                  text + "'");
    }
    return v;
  }

  // An unsigned 64-bit number (seeds): decimal digits only, at most 2^64 - 1.
  std::uint64_t unsigned_integer(const std::string& name) const {
    const std::string& text = value(name);
    std::uint64_t v = 0;
    if (!digits_only(text, 0) || !parse_whole(text, v)) {
      throw std::invalid_argument("--" + name + ": expected a whole number from 0 to " +
                                  std::to_string(std::numeric_limits<std::uint64_t>::max()) + ", got '" + text + "'");
    }
    return v;
  }

  // An on/off option given as 1 or 0.
  bool boolean(const std::string& name) const {
    const std::string& text = value(name);
    if (text != "0" && text != "1") throw std::invalid_argument("--" + name + ": expected 1 or 0, got '" + text + "'");
    return text == "1";
  }

  // One of a fixed list of words.
  const std::string& choice(const std::string& name, std::initializer_list<std::string_view> allowed) const {
    const std::string& text = value(name);
    std::string list;
    for (std::string_view a : allowed) {
      if (text == a) return text;
      list += (list.empty() ? "" : ", ") + std::string(a);
    }
    throw std::invalid_argument("--" + name + ": expected one of " + list + ", got '" + text + "'");
  }

  // Throws "--<name>: expected <expectation>, got '<value>'" unless ok: the drivers' own range checks.
  void require(bool ok, const std::string& name, const std::string& expectation) const {
    if (!ok) throw std::invalid_argument("--" + name + ": expected " + expectation + ", got '" + value(name) + "'");
  }

  void print_help() const { std::printf("%s", app_->help().c_str()); }

 private:
  const std::string& value(const std::string& name) const {
    const auto it = values_.find(name);
    // A driver asking for a flag it never declared is a bug in the driver, not in the command line.
    if (it == values_.end()) throw std::logic_error(program_ + ": no option --" + name + " was declared");
    return it->second;
  }

  static bool digits_only(const std::string& text, std::size_t start) {
    return text.size() > start && text.find_first_not_of("0123456789", start) == std::string::npos;
  }

  template <typename T>
  static bool parse_whole(const std::string& text, T& out) {
    const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), out);
    return err == std::errc() && end == text.data() + text.size();
  }

  static std::string range_text(std::int64_t min, std::int64_t max) {
    if (max == std::numeric_limits<std::int64_t>::max()) return ">= " + std::to_string(min);
    return "from " + std::to_string(min) + " to " + std::to_string(max);
  }

  std::string program_;
  std::unique_ptr<CLI::App> app_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positionals_;
};

// The data folder: --data, else $GPUDL_DATA_DIR/<sub>, else ../shared/data/<sub>.
inline std::string data_dir(const Args& args, const std::string& sub) {
  if (!args.str("data").empty()) return args.str("data");
  if (const char* env = std::getenv("GPUDL_DATA_DIR"); env != nullptr && *env != '\0') {
    return std::string(env) + "/" + sub;
  }
  return "../shared/data/" + sub;
}

// Checks, before any work, that the file named by --<name> (when given) can be read.
// Throws std::invalid_argument naming the flag and the path.
inline void check_readable(const Args& args, const std::string& name) {
  const std::string& path = args.str(name);
  if (path.empty()) return;
  if (std::filesystem::is_directory(path) || !std::ifstream(path)) {
    throw std::invalid_argument("--" + name + ": cannot read '" + path + "'");
  }
}

// Checks, before any work, that a file can be written at `path`, given as --<flag>: its folder
// exists and the path is not a folder. Creates nothing, so a fresh run's metrics file is
// still truncated, and a checkpoint appears only where the run gets that far.
// Throws std::invalid_argument naming the flag and the path.
inline void check_writable_path(const std::string& flag, const std::string& path) {
  const std::filesystem::path p(path);
  const std::filesystem::path folder = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(folder)) {
    throw std::invalid_argument("--" + flag + ": folder '" + folder.string() + "' of '" + path + "' does not exist");
  }
  if (std::filesystem::is_directory(p)) throw std::invalid_argument("--" + flag + ": '" + path + "' is a folder");
}

// --<flag> names a folder that exists, or can be made, and takes new files: checked by making
// it and a probe file in it (removed again), before any data is read.
inline void check_writable_folder(const std::string& flag, const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec || !std::filesystem::is_directory(path)) {
    throw std::invalid_argument("--" + flag + ": cannot make the folder '" + path + "'" +
                                (ec ? ": " + ec.message() : std::string()));
  }
  const std::filesystem::path probe = std::filesystem::path(path) / ".gpudl-probe";
  std::ofstream out(probe);
  if (!out) throw std::invalid_argument("--" + flag + ": folder '" + path + "' does not take new files");
  out.close();
  std::filesystem::remove(probe, ec);
}

// The same for the file named by --<name>, when it is given.
inline void check_writable(const Args& args, const std::string& name) {
  if (!args.str(name).empty()) check_writable_path(name, args.str(name));
}

// JSON-lines metrics for the drivers that run their own loop (the Trainer writes its own):
// one record per write() to --metrics, or nothing when it is empty. These drivers do not resume,
// so the file is truncated and holds this run alone (the Trainer appends only on resume).
class MetricsFile {
 public:
  // Throws std::runtime_error naming the file when it cannot be opened.
  explicit MetricsFile(const std::string& path) {
    if (path.empty()) return;
    out_.open(path, std::ios::trunc);
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

// The drivers' error exit: "program: error: message" on stderr and status 1. In a job of
// several processes (mpirun) it ends the whole job at once, since the other ranks would wait
// in their next collective for this one until the timeout.
inline int fail(const char* program, const std::exception& e) {
  if (gpudl::dist::launch_info().size > 1) {
    gpudl::dist::abort_job(1, std::string(program) + ": error: " + e.what());
  }
  std::fprintf(stderr, "%s: error: %s\n", program, e.what());
  return 1;
}

// For the drivers with a training loop of their own, which has no data parallelism: under
// mpirun rank 0 runs it and says so, and the other ranks have nothing to do (true: return 0).
inline bool idle_rank(const char* program) {
  const gpudl::dist::LaunchInfo job = gpudl::dist::launch_info();
  if (job.size > 1 && job.rank == 0) {
    std::fprintf(stderr, "%s: trains in one process; the other %d ranks of this job have nothing to do\n", program,
                 job.size - 1);
  }
  return job.rank != 0;
}

}  // namespace examples
