// FakeKernelPmu: a PerfSyscalls whose CPU-wide counting events behave the way
// the kernel's do in the cases that break naive readers, so that the read
// paths (rdpmc in the rseq section, read() on the CPU, read() from another
// CPU) can be run end to end against one ground truth. Modelled on
// include/uapi/linux/perf_event.h (perf_event_mmap_page), kernel/events/
// core.c (perf_event_update_userpage, event_sched_in/out, perf_read_group)
// and arch/x86/events/core.c (x86_perf_event_set_period/update):
//
//  - read() always returns the current count and the current enabled and
//    running times (the kernel updates them on read);
//  - the mmap page is updated only at sched-in and on counter overflow:
//    index (hardware counter + 1, 0 while scheduled out), offset (count minus
//    the sign-extended raw counter at that moment), time_enabled and
//    time_running as of that moment. Unless cap_user_time, user space cannot
//    extrapolate the times: they are stale between updates (paravirtual
//    clocks, an unstable TSC). With cap_user_time the page carries
//    time_offset/time_mult/time_shift for the TSC, calibrated here against
//    CLOCK_MONOTONIC, the clock of the fake's times;
//  - the raw counter is pmc_width bits wide and programmed to -(2^(w-1) - 1)
//    at sched-in and after each overflow, as x86 does for counting events,
//    so its sign-extended value is negative and wraps; an overflow updates
//    the page;
//  - a counter can be made to read 0 through rdpmc while its page still says
//    cap_user_rdpmc (recent Intel kernels disable user rdpmc per counter for
//    CPU-wide events): an rdpmc reader then gets the page offset, a huge
//    number;
//  - scheduled out (multiplexing): enabled time runs, running time and the
//    count do not;
//  - a CPU taken offline freezes its events: read() keeps returning their
//    final counts;
//  - an event opened with attr.disabled neither counts nor accrues enabled
//    time until PERF_EVENT_IOC_ENABLE (EnableGroup enables the leader and
//    every member, scheduling the group in); a member opened into a group
//    whose leader is already enabled is not scheduled (counts nothing, index
//    0) until the group is next scheduled in, as with the kernel's
//    perf_group_attach on an active context.
//
// The ground truth: TrueCount(cpu, config) sums what every fd ever opened
// for that CPU and event counted while it was open.
//
// Thread safety: every member takes one mutex; pages are written under the
// page's seqlock (lock odd while writing), so readers in other threads see
// consistent pages.
#pragma once

#include <linux/perf_event.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "pmu/collectors/perf_syscalls.h"

namespace pmu::testing {

class FakeKernelPmu final : public collectors::PerfSyscalls {
 public:
  struct Options {
    bool cap_user_time = false;  // false: times on the page are stale
    bool cap_user_rdpmc = true;
    uint16_t pmc_width = 48;
  };
  static constexpr size_t kCounters = 64;

  explicit FakeKernelPmu(Options options);
  ~FakeKernelPmu() override;
  FakeKernelPmu(const FakeKernelPmu&) = delete;
  FakeKernelPmu& operator=(const FakeKernelPmu&) = delete;

  int Open(perf_event_attr* attr, pid_t pid, int cpu, int group_fd, unsigned long flags) override;
  ssize_t Read(int fd, void* buf, size_t len) override;
  int Close(int fd) override;
  int EnableGroup(int leader_fd) override;
  const perf_event_mmap_page* MapPage(int fd) override;
  void UnmapPage(const perf_event_mmap_page* page) override;

  // The hardware counters as rdpmc would read them (PmcSource::Fake).
  const volatile uint64_t* counters() const { return counters_; }

  // Events of `config` open on `cpu` count `n` more (those scheduled in).
  void Count(int cpu, uint64_t config, uint64_t n);
  // Multiplexing: every event of `cpu` leaves / gets the PMU.
  void ScheduleOut(int cpu);
  void ScheduleIn(int cpu);
  // Hotplug: an offline CPU's events freeze.
  void SetOnline(int cpu, bool online);
  // rdpmc reads 0 for every counter while the pages keep cap_user_rdpmc.
  void DisableUserRdpmcPerCounter(bool disabled);

  uint64_t TrueCount(int cpu, uint64_t config) const;
  size_t open_fds() const;

 private:
  struct Event {
    int cpu = -1;
    uint64_t config = 0;
    int leader = -1;  // fd of the group leader (itself for a leader)
    size_t slot = 0;  // hardware counter
    uint64_t count = 0;
    uint64_t raw = 0;  // the pmc_width-bit hardware counter
    bool in = true;    // scheduled in
    bool frozen = false;
    bool enabled = true;     // !attr.disabled, or enabled by ioctl since
    int64_t enabled_ns = 0;  // accumulated up to `since_ns`
    int64_t running_ns = 0;
    int64_t since_ns = 0;
    perf_event_mmap_page* page = nullptr;
  };

  bool Enabled(const Event& e) const;   // the event and its leader are enabled
  void Advance(Event& e, int64_t now);  // times up to now
  void Program(Event& e);               // raw = -(2^(w-1) - 1)
  void UpdatePage(Event& e, int64_t now);
  uint64_t Mask() const;
  int64_t SignExtend(uint64_t raw) const;

  Options options_;
  mutable std::mutex mutex_;
  volatile uint64_t* counters_ = nullptr;  // one page of kCounters
  bool rdpmc_per_counter_disabled_ = false;
  std::map<int, Event> events_;
  std::vector<bool> slot_used_ = std::vector<bool>(kCounters, false);
  std::map<std::pair<int, uint64_t>, uint64_t> closed_counts_;  // counts of closed fds
  std::map<int, bool> offline_;
  int next_fd_ = 5000;
  // cap_user_time: ns = (cycles * mult) >> shift.
  uint32_t time_mult_ = 0;
  uint16_t time_shift_ = 0;
};

}  // namespace pmu::testing
