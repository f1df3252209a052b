// Plain data shared between the portable primitives and the per-ISA critical
// sections (arch/*.h; specified in pseudocode.h). The sections address these
// fields through offsetof() immediates or literals, so every layout
// assumption is pinned by a static_assert below.
#ifndef PMU_RSEQ_SECTION_TYPES_H_
#define PMU_RSEQ_SECTION_TYPES_H_

#include <linux/perf_event.h>

#include <cstddef>
#include <cstdint>

namespace pmu::rseq::detail {

inline constexpr std::size_t kCacheLine = 64;

// Control block of one CPU's ring.
//   head   written only by a committing section on the ring's CPU, or by a
//          fallback producer that holds `lock`; read by the consumer
//          (acquire).
//   lock   0 = free. A fallback producer (or a consumer that quiesces the
//          ring) sets it; a section that sees it non-zero leaves through its
//          compare-failed exit.
//   tail   written only by the single consumer (release); read by producers.
struct alignas(kCacheLine) RingControl {
  std::uint64_t head;
  std::uint64_t lock;
  std::uint64_t mask;     // capacity - 1 (capacity is a power of two)
  unsigned char* buffer;  // capacity slots of `stride` bytes each
  alignas(kCacheLine) std::uint64_t tail;
};
static_assert(offsetof(RingControl, head) == 0, "aarch64 stlr addresses head by the base register");
static_assert(offsetof(RingControl, tail) == kCacheLine, "tail on its own cache line");
static_assert(sizeof(RingControl) == 2 * kCacheLine);

// What the counter-read section copies out of one perf_event_mmap_page while
// the page's seqlock is stable. Arithmetic that needs no page access (time
// conversion) happens after the commit, on this snapshot.
struct RawPageRead {
  std::uint64_t value;  // page->offset + sign-extended pmc (pmc_width)
  std::uint64_t time_enabled;
  std::uint64_t time_running;
  std::uint64_t time_offset;
  std::uint64_t tsc;  // rdtsc, only when cap_user_time
  std::uint64_t capabilities;
  std::uint32_t time_mult;
  std::uint32_t time_shift;   // zero-extended u16
  std::uint64_t time_cycles;  // only when cap_user_time
  std::uint64_t time_mask;    // only when cap_user_time
};
static_assert(sizeof(RawPageRead) == 72);
static_assert(offsetof(RawPageRead, value) == 0);
static_assert(offsetof(RawPageRead, time_enabled) == 8);
static_assert(offsetof(RawPageRead, time_running) == 16);
static_assert(offsetof(RawPageRead, time_offset) == 24);
static_assert(offsetof(RawPageRead, tsc) == 32);
static_assert(offsetof(RawPageRead, capabilities) == 40);
static_assert(offsetof(RawPageRead, time_mult) == 48);
static_assert(offsetof(RawPageRead, time_shift) == 52);
static_assert(offsetof(RawPageRead, time_cycles) == 56);
static_assert(offsetof(RawPageRead, time_mask) == 64);

// Arguments and results of one counter-read section (one pointer operand).
struct ReadContext {
  const perf_event_mmap_page* const* pages;
  std::uint64_t count;
  const volatile std::uint64_t* fake_counters;  // seam: replaces rdpmc
  RawPageRead* out;
  std::uint64_t stopped_at;  // page that asked for read() (exit point)
  std::uint64_t committed;   // the commit store sets it to 1
};
static_assert(offsetof(ReadContext, pages) == 0);
static_assert(offsetof(ReadContext, count) == 8);
static_assert(offsetof(ReadContext, fake_counters) == 16);
static_assert(offsetof(ReadContext, out) == 24);
static_assert(offsetof(ReadContext, stopped_at) == 32);
static_assert(offsetof(ReadContext, committed) == 40);

// Layout of the perf ABI the section relies on (arch/x86_64.h uses these
// offsets as literals).
static_assert(offsetof(perf_event_mmap_page, lock) == 8);
static_assert(offsetof(perf_event_mmap_page, index) == 12);
static_assert(offsetof(perf_event_mmap_page, offset) == 16);
static_assert(offsetof(perf_event_mmap_page, time_enabled) == 24);
static_assert(offsetof(perf_event_mmap_page, time_running) == 32);
static_assert(offsetof(perf_event_mmap_page, capabilities) == 40);
static_assert(offsetof(perf_event_mmap_page, pmc_width) == 48);
static_assert(offsetof(perf_event_mmap_page, time_shift) == 50);
static_assert(offsetof(perf_event_mmap_page, time_mult) == 52);
static_assert(offsetof(perf_event_mmap_page, time_offset) == 56);
static_assert(offsetof(perf_event_mmap_page, time_cycles) == 80);
static_assert(offsetof(perf_event_mmap_page, time_mask) == 88);

// Bits of perf_event_mmap_page::capabilities (checked against the bitfields
// in a unit test).
inline constexpr std::uint64_t kCapUserRdpmc = std::uint64_t{1} << 2;
inline constexpr std::uint64_t kCapUserTime = std::uint64_t{1} << 3;
inline constexpr std::uint64_t kCapUserTimeShort = std::uint64_t{1} << 5;

}  // namespace pmu::rseq::detail

#endif  // PMU_RSEQ_SECTION_TYPES_H_
