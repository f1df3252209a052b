// The seam between collectors and the kernel's perf_event interface.
//
// Every perf system call the collectors make goes through a PerfSyscalls
// object, so tests can inject any errno (ENOENT, EACCES, EMFILE, EBUSY, ...)
// for any event on any CPU without needing the condition on the host.
//
// Contract: each call returns >= 0 on success and -errno on failure, with the
// errno captured immediately after the system call.
//
// Thread safety: RealPerfSyscalls is stateless and may be shared by all
// threads. Fakes document their own rules.
#pragma once

#include <linux/perf_event.h>
#include <sys/types.h>

#include <cstddef>

namespace pmu::collectors {

class PerfSyscalls {
 public:
  virtual ~PerfSyscalls() = default;
  // perf_event_open(2); returns the fd or -errno. PERF_FLAG_FD_CLOEXEC is
  // always added to `flags`.
  virtual int Open(perf_event_attr* attr, pid_t pid, int cpu, int group_fd,
                   unsigned long flags) = 0;
  // read(2) of a whole buffer; returns bytes read or -errno.
  virtual ssize_t Read(int fd, void* buf, size_t len) = 0;
  // close(2); returns 0 or -errno.
  virtual int Close(int fd) = 0;
  // ioctl(leader_fd, PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP): starts a
  // group opened disabled, leader and every member at once. Returns 0 or
  // -errno. (A member added to an already-counting group is not scheduled
  // until the group is next scheduled in, so groups are opened disabled and
  // enabled once complete.)
  virtual int EnableGroup(int leader_fd) = 0;
  // mmap(2) of the event's first page (struct perf_event_mmap_page, the
  // rdpmc metadata), read-only. nullptr when it cannot be mapped.
  virtual const perf_event_mmap_page* MapPage(int fd) = 0;
  virtual void UnmapPage(const perf_event_mmap_page* page) = 0;
};

class RealPerfSyscalls final : public PerfSyscalls {
 public:
  int Open(perf_event_attr* attr, pid_t pid, int cpu, int group_fd, unsigned long flags) override;
  ssize_t Read(int fd, void* buf, size_t len) override;
  int Close(int fd) override;
  int EnableGroup(int leader_fd) override;
  const perf_event_mmap_page* MapPage(int fd) override;
  void UnmapPage(const perf_event_mmap_page* page) override;
};

// A process-wide RealPerfSyscalls.
PerfSyscalls& DefaultPerfSyscalls();

}  // namespace pmu::collectors
