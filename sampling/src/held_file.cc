#include "pmu/sampling/held_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace pmu::sampling {

HeldFile::~HeldFile() {
  if (fd_ >= 0) ::close(fd_);
}

bool HeldFile::Read(std::string_view* text, int* error) {
  if (fd_ < 0) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      *error = errno;
      return false;
    }
  }
  for (;;) {
    const ssize_t n = ::pread(fd_, buffer_.data(), buffer_.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = errno;
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    if (static_cast<size_t>(n) < buffer_.size()) {
      *text = std::string_view(buffer_.data(), static_cast<size_t>(n));
      return true;
    }
    buffer_.resize(buffer_.size() * 2);  // did not fit: read it whole again
  }
}

}  // namespace pmu::sampling
