// Counter-read section: reads up to kMaxReadEvents perf_event mmap pages of
// events opened for one CPU (pid = -1, cpu = N) on CPU N, all inside one
// rseq section, so that rdpmc can never read another CPU's counter.
//
// What the section does per page, its exits and its results are specified
// once, in pseudocode.h (ReadPages<kFakePmc>). Times: the kernel keeps a
// page's time_enabled/time_running current only at sched-in and overflow;
// user space may extrapolate them to "now" only when the page sets
// cap_user_time (include/uapi/linux/perf_event.h). ReadCountersOnCpu() does
// so for every such page, applying cap_user_time_short's
// time_cycles/time_mask correction first, and says in
// CounterReadResult::times_current whether every page could be brought up
// to date.
//
// Seam: PmcSource::Fake(counters) replaces `rdpmc(i)` by a load of
// counters[i] (a different section, same pseudocode), so tests — here and in
// collectors/ — can drive the whole path with ordinary memory standing in
// for the pages. The hardware source is the default.
//
// Faults: if user rdpmc is switched off while events are open, rdpmc raises
// SIGSEGV. With InstallReadFaultHandler() (read_fault.h) in place the read
// returns ReadStatus::kFaulted instead; without it the process dies.
//
// Thread safety: any thread; the pages must stay mapped during the call.
// noexcept, no allocation, no syscall.
#ifndef PMU_RSEQ_COUNTER_READ_H_
#define PMU_RSEQ_COUNTER_READ_H_

#include <linux/perf_event.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace pmu::rseq {

inline constexpr std::size_t kMaxReadEvents = 16;

enum class ReadStatus {
  kCommitted,  // values/time_* hold a consistent read of every page on `cpu`
  kWrongCpu,   // the caller does not run on `cpu` (move there or use read())
  kNeedRead,   // a page has index == 0 or !cap_user_rdpmc, a counter read
               // 0 (user rdpmc disabled for it), rseq is unavailable, or
               // the ISA has no read section: use read()
  kAborted,    // aborted kMaxAbortsBeforeFallback times in a row; try later
  kFaulted,    // rdpmc raised a fault (user rdpmc switched off at run time)
               // and the handler of read_fault.h turned it into an abort:
               // use read(), and use rdpmc again only after revalidating it
};

std::string_view ReadStatusName(ReadStatus status) noexcept;

struct CounterReadResult {
  ReadStatus status = ReadStatus::kAborted;
  int cpu = -1;
  std::uint32_t count = 0;            // pages read (== pages.size() when committed)
  std::uint32_t need_read_index = 0;  // kNeedRead: the page that asked for read()
  std::array<std::uint64_t, kMaxReadEvents> values{};
  std::array<std::uint64_t, kMaxReadEvents> time_enabled{};
  std::array<std::uint64_t, kMaxReadEvents> time_running{};
  // kCommitted: true when every page had cap_user_time, so time_enabled and
  // time_running were extrapolated to the moment of the read. False when at
  // least one page lacked it (paravirtual clocks, an unstable TSC): that
  // page's times are those of its last sched-in or overflow, not current,
  // and must not be paired with the value as if they were.
  bool times_current = false;
};

// Where the section gets raw counter values from.
struct PmcSource {
  // nullptr: the rdpmc instruction. Otherwise counters[index - 1] stands in
  // for rdpmc(index - 1) (tests; the array outlives the call).
  const volatile std::uint64_t* fake_counters = nullptr;

  static constexpr PmcSource Hardware() noexcept { return {}; }
  static constexpr PmcSource Fake(const volatile std::uint64_t* counters) noexcept {
    return PmcSource{counters};
  }
};

// Reads `pages` (at most kMaxReadEvents) on CPU `cpu` into *out and returns
// out->status. REQUIRES: every page belongs to an event opened for `cpu`.
ReadStatus ReadCountersOnCpu(int cpu, std::span<const perf_event_mmap_page* const> pages,
                             CounterReadResult* out,
                             PmcSource source = PmcSource::Hardware()) noexcept;

// The user-time extrapolation of perf_event_mmap_page, on a snapshot
// (pseudocode.h): time_offset + (tsc >> shift) * mult
// + (((tsc & ((1 << shift) - 1)) * mult) >> shift).
std::uint64_t TscToPerfTimeDelta(std::uint64_t tsc, std::uint64_t time_offset,
                                 std::uint32_t time_mult, std::uint32_t time_shift) noexcept;

// cap_user_time_short: the clock behind the page is narrower than 64 bits,
// so the cycles passed to TscToPerfTimeDelta() are
// time_cycles + ((cycles - time_cycles) & time_mask).
std::uint64_t ExtendShortCycles(std::uint64_t cycles, std::uint64_t time_cycles,
                                std::uint64_t time_mask) noexcept;

}  // namespace pmu::rseq

#endif  // PMU_RSEQ_COUNTER_READ_H_
