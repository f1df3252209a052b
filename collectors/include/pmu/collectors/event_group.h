// EventGroup: the perf_event fds of one PlannedGroup on one CPU.
//
// Opened CPU-wide (pid = -1, cpu = N) as a counting group with read_format
// GROUP|ID|TOTAL_TIME_ENABLED|TOTAL_TIME_RUNNING, the leader disabled, then
// enabled once with every member in place (PerfSyscalls::EnableGroup). Open
// either succeeds for the whole group or closes whatever it had opened and
// reports the errno.
//
// Thread safety: one thread at a time per object. read() on a CPU-wide fd is
// correct from any CPU (the kernel IPIs CPU N when needed).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/collectors/sample.h"

namespace pmu::collectors {

class EventGroup {
 public:
  struct OpenError {
    int err = 0;       // errno
    size_t event = 0;  // index into EventPlan::events of the event that failed
    std::string message;
  };

  // Returns nullptr and fills `error` on failure.
  static std::unique_ptr<EventGroup> Open(PerfSyscalls& sys, const EventPlan& plan,
                                          size_t group_index, int cpu, OpenError* error);
  ~EventGroup();
  EventGroup(const EventGroup&) = delete;
  EventGroup& operator=(const EventGroup&) = delete;

  // Reads the group with read(2) into `out` (values, times, count; the caller
  // sets cpu, generation, timestamp and path). Returns 0 or -errno.
  int Read(GroupSample* out) noexcept;

  // Maps every member's perf_event_mmap_page (for the rdpmc path); all or
  // nothing: returns false and maps none when any page fails. Idempotent.
  bool MapPages();
  // Empty unless MapPages() succeeded; leader first.
  const std::vector<const perf_event_mmap_page*>& pages() const { return pages_; }

  int cpu() const { return cpu_; }
  size_t group_index() const { return group_index_; }
  const std::vector<int>& fds() const { return fds_; }

 private:
  EventGroup(PerfSyscalls& sys, size_t group_index, int cpu)
      : sys_(sys), group_index_(group_index), cpu_(cpu) {}

  PerfSyscalls& sys_;
  size_t group_index_;
  int cpu_;
  std::vector<int> fds_;       // leader first
  std::vector<uint64_t> ids_;  // PERF_EVENT_IOC_ID of each fd, same order
  std::vector<const perf_event_mmap_page*> pages_;
};

}  // namespace pmu::collectors
