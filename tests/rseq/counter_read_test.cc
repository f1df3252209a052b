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
  EXPECT_EQ(TscToPerfTimeDelta(3 << 10 | 5, 100, 8, 10), 100u + 3 * 8 + ((5 * 8) >> 10));
}

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
  b.index = 2;
  b.cap_user_rdpmc = 0;
  EXPECT_EQ(ReadCountersOnCpu(pin.cpu(), ptrs, &result, PmcSource::Fake(fake)),
            ReadStatus::kNeedRead);
  EXPECT_EQ(result.need_read_index, 1u);
  b.cap_user_rdpmc = 1;
  EXPECT_EQ(ReadCountersOnCpu(pin.cpu(), ptrs, &result, PmcSource::Fake(fake)),
            ReadStatus::kCommitted);
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
