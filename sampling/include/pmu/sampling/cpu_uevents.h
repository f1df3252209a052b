// CpuUevents: CPU hotplug as the kernel announces it — kobject uevents over
// netlink (NETLINK_KOBJECT_UEVENT, multicast group 1), the messages udev
// listens to ("online@/devices/system/cpu/cpu1", SUBSYSTEM=cpu). The
// aggregator waits on fd() and looks at the online list only when a CPU
// event arrived (or on its slow safety poll), instead of reading
// /sys/devices/system/cpu/online every interval.
//
// Where the socket cannot be opened or bound (a network namespace without
// uevents, a seccomp filter) fd() is -1 and the safety poll alone notices
// hotplug; `error()` says why.
//
// Thread safety: one thread (the aggregator's).
#pragma once

#include <string>

namespace pmu::sampling {

class CpuUevents {
 public:
  CpuUevents();
  ~CpuUevents();
  CpuUevents(const CpuUevents&) = delete;
  CpuUevents& operator=(const CpuUevents&) = delete;

  int fd() const { return fd_; }
  const std::string& error() const { return error_; }
  // Reads every queued message without blocking; true when one of them was
  // about a CPU (online, offline, add, remove). A lost message (ENOBUFS)
  // counts as one: the caller must look.
  bool DrainCpuEvents();

 private:
  int fd_ = -1;
  std::string error_;
};

}  // namespace pmu::sampling
