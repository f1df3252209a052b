#include "pmu/rseq/counter_read.h"

#include "pmu/rseq/abi.h"
#include "pmu/rseq/arch.h"
#include "pmu/rseq/read_fault.h"

// The table of ReadPages descriptors (pseudocode.h, kReadSectionTable); the
// linker defines these bounds because this file instantiates the sections.
extern "C" {
extern const struct rseq_cs* const __start_pmu_rseq_read_cs[] __attribute__((visibility("hidden")));
extern const struct rseq_cs* const __stop_pmu_rseq_read_cs[] __attribute__((visibility("hidden")));
}

namespace pmu::rseq {

std::string_view ReadStatusName(ReadStatus status) noexcept {
  switch (status) {
    case ReadStatus::kCommitted:
      return "committed";
    case ReadStatus::kWrongCpu:
      return "wrong_cpu";
    case ReadStatus::kNeedRead:
      return "need_read";
    case ReadStatus::kAborted:
      return "aborted";
    case ReadStatus::kFaulted:
      return "faulted";
  }
  return "unknown";
}

std::uint64_t TscToPerfTimeDelta(std::uint64_t tsc, std::uint64_t time_offset,
                                 std::uint32_t time_mult, std::uint32_t time_shift) noexcept {
  const std::uint32_t shift = time_shift & 63u;
  const std::uint64_t quot = tsc >> shift;
  const std::uint64_t rem = tsc & ((std::uint64_t{1} << shift) - 1);
  return time_offset + quot * time_mult + ((rem * time_mult) >> shift);
}

std::uint64_t ExtendShortCycles(std::uint64_t cycles, std::uint64_t time_cycles,
                                std::uint64_t time_mask) noexcept {
  return time_cycles + ((cycles - time_cycles) & time_mask);
}

bool detail::IsReadSectionAbortIp(std::uintptr_t ip) noexcept {
  if constexpr (detail::arch::kHasCounterReadSection) {
    for (const struct rseq_cs* const* d = __start_pmu_rseq_read_cs; d != __stop_pmu_rseq_read_cs;
         ++d) {
      if ((*d)->abort_ip == ip) return true;
    }
  }
  return false;
}

ReadStatus ReadCountersOnCpu(int cpu, std::span<const perf_event_mmap_page* const> pages,
                             CounterReadResult* out, PmcSource source) noexcept {
  out->cpu = cpu;
  out->count = 0;
  out->need_read_index = 0;
  out->times_current = false;
  out->status = ReadStatus::kNeedRead;
  if (!detail::arch::kHasCounterReadSection || pages.size() > kMaxReadEvents || cpu < 0) {
    return out->status;
  }
  struct ::rseq* area = detail::ThreadArea();
  if (area == nullptr) return out->status;

  detail::RawPageRead raw[kMaxReadEvents];
  detail::ReadContext ctx{pages.data(), pages.size(), source.fake_counters, raw, 0, 0};
  const auto want = static_cast<std::uint32_t>(cpu);
  for (int attempt = 0; attempt < detail::kMaxAbortsBeforeFallback; ++attempt) {
    if (detail::LoadCpuIdStart(area) != want) {
      out->status = ReadStatus::kWrongCpu;
      return out->status;
    }
    ctx.committed = 0;
    detail::ClearReadFault();
    const int r = source.fake_counters != nullptr
                      ? detail::arch::ReadPages<true>(area, want, &ctx)
                      : detail::arch::ReadPages<false>(area, want, &ctx);
    if (r == detail::kSectionNeedRead) {
      out->need_read_index = static_cast<std::uint32_t>(ctx.stopped_at);
      return out->status;  // kNeedRead
    }
    if (r == detail::kSectionCommitted && ctx.committed == 1) {
      bool times_current = true;
      for (std::size_t i = 0; i < pages.size(); ++i) {
        const detail::RawPageRead& p = raw[i];
        std::uint64_t enabled = p.time_enabled;
        std::uint64_t running = p.time_running;
        if ((p.capabilities & detail::kCapUserTime) != 0) {
          std::uint64_t cycles = p.tsc;
          if ((p.capabilities & detail::kCapUserTimeShort) != 0) {
            cycles = ExtendShortCycles(cycles, p.time_cycles, p.time_mask);
          }
          const std::uint64_t delta =
              TscToPerfTimeDelta(cycles, p.time_offset, p.time_mult, p.time_shift);
          enabled += delta;
          running += delta;
        } else {
          times_current = false;
        }
        out->values[i] = p.value;
        out->time_enabled[i] = enabled;
        out->time_running[i] = running;
      }
      out->times_current = times_current;
      out->count = static_cast<std::uint32_t>(pages.size());
      out->status = ReadStatus::kCommitted;
      return out->status;
    }
    if (detail::TakeReadFault()) {
      out->status = ReadStatus::kFaulted;
      return out->status;
    }
  }
  out->status = ReadStatus::kAborted;
  return out->status;
}

}  // namespace pmu::rseq
