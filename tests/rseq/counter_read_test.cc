#include "pmu/rseq/counter_read.h"

#include <gtest/gtest.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "pmu/rseq/abi.h"
#include "pmu/rseq/arch.h"
#include "scoped_pin.h"

namespace pmu::rseq {
namespace {

using testing::ScopedPinHere;

bool SectionsUsable() {
  return detail::arch::kHasCounterReadSection && CurrentMode() != Mode::kUnavailable;
}

perf_event_mmap_page MakePage(std::uint32_t index, std::int64_t offset) {
  perf_event_mmap_page page;
  std::memset(&page, 0, sizeof(page));
  page.lock = 2;
  page.index = index;
  page.offset = offset;
  page.time_enabled = 1000;
  page.time_running = 500;
  page.cap_user_rdpmc = 1;
  page.pmc_width = 48;
  return page;
}

TEST(CounterRead, CapabilityBitsMatchTheKernelHeader) {
  perf_event_mmap_page page;
  std::memset(&page, 0, sizeof(page));
  page.cap_user_rdpmc = 1;
  EXPECT_EQ(page.capabilities, detail::kCapUserRdpmc);
  page.cap_user_rdpmc = 0;
  page.cap_user_time = 1;
  EXPECT_EQ(page.capabilities, detail::kCapUserTime);
  page.cap_user_time = 0;
  page.cap_user_time_short = 1;
  EXPECT_EQ(page.capabilities, detail::kCapUserTimeShort);
}

TEST(CounterRead, FakePagesCommitValuesAndTimes) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  std::vector<std::uint64_t> fake(16);
  std::vector<perf_event_mmap_page> pages;
  for (std::uint32_t i = 0; i < kMaxReadEvents; ++i) {
    fake[i] = 1000 + i;
    pages.push_back(MakePage(i + 1, 100 * static_cast<std::int64_t>(i)));
  }
  std::vector<const perf_event_mmap_page*> ptrs;
  for (auto& p : pages) ptrs.push_back(&p);
  CounterReadResult result;
  ASSERT_EQ(ReadCountersOnCpu(pin.cpu(), ptrs, &result, PmcSource::Fake(fake.data())),
            ReadStatus::kCommitted);
  EXPECT_EQ(result.count, kMaxReadEvents);
  EXPECT_EQ(result.cpu, pin.cpu());
  EXPECT_FALSE(result.times_current) << "no page has cap_user_time";
  for (std::size_t i = 0; i < kMaxReadEvents; ++i) {
    EXPECT_EQ(result.values[i], 1000 + i + 100 * i);
    EXPECT_EQ(result.time_enabled[i], 1000u);
    EXPECT_EQ(result.time_running[i], 500u);
  }
}

TEST(CounterRead, SignExtendsByPmcWidth) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  // A 48-bit counter holding -5 reads as 0x0000fffffffffffb.
  const std::uint64_t fake[1] = {0x0000fffffffffffbull};
  perf_event_mmap_page page = MakePage(1, 100);
  const perf_event_mmap_page* ptr = &page;
  CounterReadResult result;
  ASSERT_EQ(ReadCountersOnCpu(pin.cpu(), {&ptr, 1}, &result, PmcSource::Fake(fake)),
            ReadStatus::kCommitted);
  EXPECT_EQ(result.values[0], 95u);
}

TEST(CounterRead, UserTimeExtrapolatesWithTheTsc) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  const std::uint64_t fake[1] = {7};
  perf_event_mmap_page page = MakePage(1, 0);
  page.cap_user_time = 1;
  page.time_mult = 0;  // delta = time_offset exactly, whatever the TSC says
  page.time_shift = 10;
  page.time_offset = 250;
  const perf_event_mmap_page* ptr = &page;
  CounterReadResult result;
  ASSERT_EQ(ReadCountersOnCpu(pin.cpu(), {&ptr, 1}, &result, PmcSource::Fake(fake)),
            ReadStatus::kCommitted);
  EXPECT_EQ(result.time_enabled[0], 1250u);
  EXPECT_EQ(result.time_running[0], 750u);
  EXPECT_TRUE(result.times_current);
  EXPECT_EQ(TscToPerfTimeDelta(3 << 10 | 5, 100, 8, 10), 100u + 3 * 8 + ((5 * 8) >> 10));
}

// Without cap_user_time the kernel updates the page's times only at sched-in
// and overflow: the read passes them on unchanged and says they are stale,
// also when only one page of the group lacks the capability.
TEST(CounterRead, NoUserTimeKeepsThePageTimesAndSaysSo) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  const std::uint64_t fake[2] = {7, 8};
  perf_event_mmap_page with = MakePage(1, 0);
  with.cap_user_time = 1;
  with.time_mult = 0;
  with.time_offset = 250;
  perf_event_mmap_page without = MakePage(2, 0);
  without.time_mult = 1;  // would move the times if anything applied it
  without.time_offset = 99;
  const perf_event_mmap_page* ptrs[2] = {&with, &without};
  CounterReadResult result;
  ASSERT_EQ(ReadCountersOnCpu(pin.cpu(), ptrs, &result, PmcSource::Fake(fake)),
            ReadStatus::kCommitted);
  EXPECT_FALSE(result.times_current);
  EXPECT_EQ(result.time_enabled[0], 1250u);
  EXPECT_EQ(result.time_running[0], 750u);
  EXPECT_EQ(result.time_enabled[1], 1000u);
  EXPECT_EQ(result.time_running[1], 500u);
  EXPECT_EQ(result.values[1], 8u);
}

// cap_user_time_short (include/uapi/linux/perf_event.h): a clock narrower
// than 64 bits wraps; time_cycles + ((cyc - time_cycles) & time_mask) undoes
// the wrap before the conversion.
TEST(CounterRead, ShortCyclesUndoTheWrap) {
  // A 32-bit clock that wrapped since the kernel sampled 0xfffffff0.
  EXPECT_EQ(ExtendShortCycles(0x10, 0xfffffff0, 0xffffffff), 0x100000010u);
  EXPECT_EQ(ExtendShortCycles(0x5, 0x1, 0xffffffff), 0x5u);  // no wrap
  // A 64-bit read of the same clock carries high bits the mask drops.
  EXPECT_EQ(ExtendShortCycles(0xabcd00000010, 0xfffffff0, 0xffffffff), 0x100000010u);
  EXPECT_EQ(ExtendShortCycles(12345, 77, 0), 77u);
}

#if defined(__x86_64__)
// A page whose clock is a cap_user_time_short one.
perf_event_mmap_page ShortClockPage(std::uint32_t mult, std::uint16_t shift, std::uint64_t offset,
                                    std::uint64_t cycles, std::uint64_t mask) {
  perf_event_mmap_page page = MakePage(1, 0);
  page.cap_user_time = 1;
  page.cap_user_time_short = 1;
  page.time_mult = mult;
  page.time_shift = shift;
  page.time_offset = offset;
  page.time_cycles = cycles;
  page.time_mask = mask;
  return page;
}

// Reads `page` through the fake section on the pinned CPU.
ReadStatus ReadOne(const ScopedPinHere& pin, const perf_event_mmap_page& page,
                   CounterReadResult* result) {
  static const std::uint64_t fake[1] = {7};
  const perf_event_mmap_page* ptr = &page;
  return ReadCountersOnCpu(pin.cpu(), {&ptr, 1}, result, PmcSource::Fake(fake));
}

// The section copies time_cycles/time_mask under the page's seqlock and the
// read applies them. A zero mask freezes the clock at time_cycles, so the
// result is exact whatever the TSC says.
TEST(CounterRead, ShortUserTimeUsesTimeCyclesAndMask) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  const perf_event_mmap_page page = ShortClockPage(3, 1, 40, 1000, 0);
  CounterReadResult result;
  ASSERT_EQ(ReadOne(pin, page, &result), ReadStatus::kCommitted);
  EXPECT_TRUE(result.times_current);
  const std::uint64_t delta = 40 + 1000 / 2 * 3;  // time_offset + (cyc >> 1) * 3
  EXPECT_EQ(result.time_enabled[0], 1000u + delta);
  EXPECT_EQ(result.time_running[0], 500u + delta);
}

// A 32-bit clock whose last kernel sample lies "ahead" of the TSC in the
// high bits: cyc - time_cycles wraps around 2^64 and only the mask gives
// the cycles elapsed since the sample (1000 + however long the read took).
TEST(CounterRead, ShortUserTimeMasksAWrappedDifference) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  const std::uint64_t before = __rdtsc();
  const std::uint64_t time_cycles = 0xffffffff00000000ull | ((before - 1000) & 0xffffffff);
  const perf_event_mmap_page page = ShortClockPage(1, 0, 0, time_cycles, 0xffffffff);
  CounterReadResult result;
  ASSERT_EQ(ReadOne(pin, page, &result), ReadStatus::kCommitted);
  const std::uint64_t after = __rdtsc();
  ASSERT_LT(after - before, std::uint64_t{1} << 31) << "read took too long to check";
  const std::uint64_t elapsed = result.time_enabled[0] - 1000 - time_cycles;
  EXPECT_GE(elapsed, 1000u);
  EXPECT_LE(elapsed, 1000u + (after - before));
  EXPECT_EQ(result.time_running[0] - 500, result.time_enabled[0] - 1000);
  EXPECT_TRUE(result.times_current);
}
#endif  // __x86_64__

TEST(CounterRead, IndexZeroOrNoRdpmcAsksForRead) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  const std::uint64_t fake[2] = {1, 2};
  perf_event_mmap_page a = MakePage(1, 0);
  perf_event_mmap_page b = MakePage(0, 0);
  const perf_event_mmap_page* ptrs[2] = {&a, &b};
  CounterReadResult result;
  EXPECT_EQ(ReadCountersOnCpu(pin.cpu(), ptrs, &result, PmcSource::Fake(fake)),
            ReadStatus::kNeedRead);
  EXPECT_EQ(result.need_read_index, 1u);
  EXPECT_EQ(result.count, 0u);
  EXPECT_FALSE(result.times_current);
  b.index = 2;
  b.cap_user_rdpmc = 0;
  EXPECT_EQ(ReadCountersOnCpu(pin.cpu(), ptrs, &result, PmcSource::Fake(fake)),
            ReadStatus::kNeedRead);
  EXPECT_EQ(result.need_read_index, 1u);
  b.cap_user_rdpmc = 1;
  EXPECT_EQ(ReadCountersOnCpu(pin.cpu(), ptrs, &result, PmcSource::Fake(fake)),
            ReadStatus::kCommitted);
}

TEST(CounterRead, ACounterReadingZeroAsksForRead) {
  // Kernels that disable user rdpmc per counter for CPU-wide events leave
  // cap_user_rdpmc set; rdpmc then reads 0 and value would be the page
  // offset (about 2^47 for a 48-bit counter).
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  const std::uint64_t fake[2] = {5, 0};
  perf_event_mmap_page a = MakePage(1, 0);
  perf_event_mmap_page b = MakePage(2, std::int64_t{1} << 47);
  const perf_event_mmap_page* ptrs[2] = {&a, &b};
  CounterReadResult result;
  EXPECT_EQ(ReadCountersOnCpu(pin.cpu(), ptrs, &result, PmcSource::Fake(fake)),
            ReadStatus::kNeedRead);
  EXPECT_EQ(result.need_read_index, 1u);
}

TEST(CounterRead, WrongCpuIsRefused) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  if (PossibleCpuCount() < 2) GTEST_SKIP() << "needs two CPUs";
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  const std::uint64_t fake[1] = {1};
  perf_event_mmap_page page = MakePage(1, 0);
  const perf_event_mmap_page* ptr = &page;
  CounterReadResult result;
  EXPECT_EQ(ReadCountersOnCpu((pin.cpu() + 1) % PossibleCpuCount(), {&ptr, 1}, &result,
                              PmcSource::Fake(fake)),
            ReadStatus::kWrongCpu);
}

TEST(CounterRead, TooManyPagesAsksForRead) {
  std::vector<const perf_event_mmap_page*> ptrs(kMaxReadEvents + 1, nullptr);
  CounterReadResult result;
  EXPECT_EQ(ReadCountersOnCpu(0, ptrs, &result), ReadStatus::kNeedRead);
}

// A real CPU-wide software event: its page has index 0 here (no PMU), so the
// hardware section must leave through the read() exit without ever running
// rdpmc (which would fault on this machine).
TEST(CounterRead, RealSoftwareEventPageAsksForRead) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  perf_event_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.size = sizeof(attr);
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_CPU_CLOCK;
  const long fd = syscall(__NR_perf_event_open, &attr, -1, pin.cpu(), -1, 0);
  if (fd < 0)
    GTEST_SKIP() << "perf_event_open(cpu-clock, cpu " << pin.cpu() << "): " << std::strerror(errno);
  const long page_size = sysconf(_SC_PAGESIZE);
  void* map = mmap(nullptr, static_cast<std::size_t>(page_size), PROT_READ, MAP_SHARED,
                   static_cast<int>(fd), 0);
  if (map == MAP_FAILED) {
    close(static_cast<int>(fd));
    GTEST_SKIP() << "mmap of the perf page failed: " << std::strerror(errno);
  }
  const auto* page = static_cast<const perf_event_mmap_page*>(map);
  CounterReadResult result;
  const ReadStatus status = ReadCountersOnCpu(pin.cpu(), {&page, 1}, &result);
  if (page->index != 0 && page->cap_user_rdpmc) {
    EXPECT_EQ(status, ReadStatus::kCommitted);  // a machine with a usable PMU
  } else {
    EXPECT_EQ(status, ReadStatus::kNeedRead);
    EXPECT_EQ(result.need_read_index, 0u);
  }
  munmap(map, static_cast<std::size_t>(page_size));
  close(static_cast<int>(fd));
}

}  // namespace
}  // namespace pmu::rseq
