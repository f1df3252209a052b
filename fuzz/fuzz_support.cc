#include "fuzz_support.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>

namespace pmu::fuzz {
namespace {

struct Root {
  std::string path;
  Root() {
    // Memory-backed when the host has /dev/shm: the parsers open and read
    // the file on every run.
    const char* tmp = std::getenv("TMPDIR");
    const std::string base = tmp != nullptr                  ? tmp
                             : access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                             : "/tmp";
    std::string pattern = base + "/pmu-fuzz-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = pattern;
  }
  ~Root() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

}  // namespace

const std::string& FakeRoot() {
  static const Root root;
  return root.path;
}

void WriteFakeFile(const std::string& relative, const uint8_t* data, size_t size) {
  static std::set<std::string> made;  // directories already created
  const std::filesystem::path path = std::filesystem::path(FakeRoot()) / relative;
  if (made.insert(path.parent_path().string()).second) {
    std::filesystem::create_directories(path.parent_path());
  }
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write " + path.string());
  for (size_t done = 0; done < size;) {
    const ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
}

}  // namespace pmu::fuzz
