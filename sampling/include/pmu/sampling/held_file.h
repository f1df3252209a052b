// HeldFile: a procfs/sysfs file read again and again through one descriptor
// opened once, with pread(2) from offset 0 — no open/close per reading.
// procfs files report size 0: a reading grows its buffer until one pread
// returns less than the buffer holds. A failed read closes the descriptor;
// the next Read() opens it again (a file that appears later is picked up).
//
// Thread safety: one thread at a time.
#pragma once

#include <string>
#include <string_view>

namespace pmu::sampling {

class HeldFile {
 public:
  explicit HeldFile(std::string path) : path_(std::move(path)) {}
  ~HeldFile();
  HeldFile(const HeldFile&) = delete;
  HeldFile& operator=(const HeldFile&) = delete;

  // The whole file, valid until the next Read(); false with `*error` set to
  // the errno (ENOENT when it does not exist) when it cannot be read.
  bool Read(std::string_view* text, int* error);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::string buffer_ = std::string(16384, '\0');
};

}  // namespace pmu::sampling
