// AtomicFile: a temporary file fsynced and renamed over its target, then the folder fsynced.
#include "gpudl/core/detail/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "gpudl/core/runtime/error.h"

namespace gpudl::detail {

namespace {

// strerror's text without its thread-safety problem.
std::string error_text(int err) { return std::generic_category().message(err); }

std::string parent_directory(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(std::string who, std::string target)
    : who_(std::move(who)), target_(std::move(target)), path_(target_ + ".tmp-" + std::to_string(::getpid())) {
  file_ = std::fopen(path_.c_str(), "wb");
  if (file_ == nullptr) {
    const int err = errno;
    path_.clear();  // nothing was created
    fail("creating temporary file " + target_ + ".tmp-" + std::to_string(::getpid()), err);
  }
}

AtomicFile::~AtomicFile() {
  if (file_ != nullptr) std::fclose(file_);
  if (!path_.empty()) ::unlink(path_.c_str());
}

void AtomicFile::fail(const std::string& step, int err) const {
  throw IoError(who_ + ": " + target_ + ": " + step + ": " + error_text(err));
}

void AtomicFile::write(const void* data, std::size_t bytes) {
  if (bytes == 0) return;
  errno = 0;
  if (std::fwrite(data, 1, bytes, file_) != bytes) fail("writing " + path_, errno != 0 ? errno : EIO);
}

void AtomicFile::commit() {
  if (std::fflush(file_) != 0) fail("flushing " + path_, errno);
  if (::fsync(::fileno(file_)) != 0) fail("fsync of " + path_, errno);
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) fail("closing " + path_, errno);
  if (std::rename(path_.c_str(), target_.c_str()) != 0) fail("renaming " + path_ + " over it", errno);
  path_.clear();  // nothing left to remove
  // Makes the rename itself durable. Filesystems that cannot fsync a directory say EINVAL (or
  // ENOTSUP); there is nothing more to do on those.
  const std::string dir = parent_directory(target_);
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("opening directory " + dir + " to fsync it", errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != ENOTSUP) fail("fsync of directory " + dir, err);
}

}  // namespace gpudl::detail
