#include "pmu/collectors/perf_syscalls.h"

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace pmu::collectors {

int RealPerfSyscalls::Open(perf_event_attr* attr, pid_t pid, int cpu, int group_fd,
                           unsigned long flags) {
  long fd = syscall(SYS_perf_event_open, attr, pid, cpu, group_fd, flags | PERF_FLAG_FD_CLOEXEC);
  if (fd < 0) return -errno;
  return static_cast<int>(fd);
}

ssize_t RealPerfSyscalls::Read(int fd, void* buf, size_t len) {
  ssize_t n;
  do {
    n = ::read(fd, buf, len);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

int RealPerfSyscalls::Close(int fd) { return ::close(fd) < 0 ? -errno : 0; }

int RealPerfSyscalls::EnableGroup(int leader_fd) {
  return ioctl(leader_fd, PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP) < 0 ? -errno : 0;
}

const perf_event_mmap_page* RealPerfSyscalls::MapPage(int fd) {
  void* p = mmap(nullptr, static_cast<size_t>(sysconf(_SC_PAGESIZE)), PROT_READ, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : static_cast<const perf_event_mmap_page*>(p);
}

void RealPerfSyscalls::UnmapPage(const perf_event_mmap_page* page) {
  if (page != nullptr) {
    munmap(const_cast<perf_event_mmap_page*>(page), static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  }
}

PerfSyscalls& DefaultPerfSyscalls() {
  static RealPerfSyscalls real;
  return real;
}

}  // namespace pmu::collectors
