// The SIGSEGV handler of read_fault.h, for real: a fault inside the
// counter-read section becomes ReadStatus::kFaulted and the process lives on;
// every other SIGSEGV still kills (each such case runs in a forked child).
#include "pmu/rseq/read_fault.h"

#include <gtest/gtest.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "pmu/rseq/abi.h"
#include "pmu/rseq/arch.h"
#include "pmu/rseq/counter_read.h"
#include "scoped_pin.h"

namespace pmu::rseq {
namespace {

using testing::ScopedPinHere;

// Installs the handler for one test and removes it again, so that no other
// test (and no forked child of one) inherits it by accident.
class ScopedReadFaultHandler {
 public:
  ScopedReadFaultHandler() : ok_(InstallReadFaultHandler()) {}
  ~ScopedReadFaultHandler() { RemoveReadFaultHandler(); }
  ScopedReadFaultHandler(const ScopedReadFaultHandler&) = delete;
  ScopedReadFaultHandler& operator=(const ScopedReadFaultHandler&) = delete;
  bool ok() const { return ok_; }

 private:
  bool ok_;
};

bool SectionsUsable() {
  return detail::arch::kHasCounterReadSection && CurrentMode() != Mode::kUnavailable;
}

// A page as the kernel leaves it for an event whose counter is on the PMU:
// user rdpmc allowed, counter 0 (index 1).
perf_event_mmap_page RdpmcPage() {
  perf_event_mmap_page page;
  std::memset(&page, 0, sizeof(page));
  page.lock = 2;
  page.index = 1;
  page.cap_user_rdpmc = 1;
  page.pmc_width = 48;
  return page;
}

#if defined(__x86_64__)
// A "fake counter array" at a non-canonical address: the fake section's load
// of counters[0] raises #GP (SIGSEGV, si_code SI_KERNEL) just as a disabled
// rdpmc does, on every x86-64 host.
const volatile std::uint64_t* const kNonCanonical =
    reinterpret_cast<const volatile std::uint64_t*>(0x8000000000000000ull);

void RdpmcOutsideAnySection() {
  std::uint32_t lo = 0, hi = 0;
  asm volatile("rdpmc" : "=a"(lo), "=d"(hi) : "c"(0u));
  (void)lo;
  (void)hi;
}

// Whether user rdpmc faults on this host: a forked child executes it once.
// Returns an empty string when it faults, else why the test must skip.
std::string WhyRdpmcDoesNotFault() {
  const pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL);
    RdpmcOutsideAnySection();
    _exit(0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return "waitpid failed";
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) return "";
  return "user rdpmc does not fault on this host (CR4.PCE is set: a hardware PMU with "
         "/sys/bus/event_source/devices/cpu/rdpmc != 0)";
}
#endif

// Reads one fake "on the PMU" page through `source` on the current CPU.
ReadStatus ReadOnePage(PmcSource source) {
  ScopedPinHere pin;
  if (!pin.pinned()) return ReadStatus::kWrongCpu;
  perf_event_mmap_page page = RdpmcPage();
  const perf_event_mmap_page* ptr = &page;
  CounterReadResult result;
  return ReadCountersOnCpu(pin.cpu(), {&ptr, 1}, &result, source);
}

// In a forked child: SIGSEGV back to its default (a sanitizer's handler
// would turn the death into an exit code), then the handler if asked.
void ChildStart(bool install) {
  signal(SIGSEGV, SIG_DFL);
  if (install && !InstallReadFaultHandler()) _exit(3);
}

// Runs `body` in a forked child, with the handler installed when `install`,
// and expects SIGSEGV to kill the child.
void ExpectSegvKills(bool install, void (*body)()) {
  EXPECT_EXIT(
      {
        ChildStart(install);
        body();
        _exit(0);
      },
      ::testing::KilledBySignal(SIGSEGV), "");
}

TEST(ReadFault, InstallIsIdempotentAndRemovable) {
  struct sigaction before = {};
  ASSERT_EQ(sigaction(SIGSEGV, nullptr, &before), 0);
  {
    ScopedReadFaultHandler handler;
    ASSERT_TRUE(handler.ok());
    EXPECT_TRUE(ReadFaultHandlerInstalled());
    EXPECT_TRUE(InstallReadFaultHandler());
    struct sigaction now = {};
    ASSERT_EQ(sigaction(SIGSEGV, nullptr, &now), 0);
    EXPECT_NE(now.sa_flags & SA_SIGINFO, 0);
    EXPECT_NE(now.sa_flags & SA_ONSTACK, 0);
    EXPECT_NE(now.sa_flags & SA_NODEFER, 0);
  }
  EXPECT_FALSE(ReadFaultHandlerInstalled());
  struct sigaction after = {};
  ASSERT_EQ(sigaction(SIGSEGV, nullptr, &after), 0);
  EXPECT_EQ(after.sa_flags & SA_SIGINFO, before.sa_flags & SA_SIGINFO);
  EXPECT_EQ(reinterpret_cast<void*>(after.sa_handler), reinterpret_cast<void*>(before.sa_handler));
}

#if defined(__x86_64__)
// The real case: this host has no PMU (or user rdpmc is off), so rdpmc on a
// page that claims cap_user_rdpmc and index 1 raises #GP inside the section.
TEST(ReadFault, HardwareRdpmcFaultIsReportedAndSurvived) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  if (const std::string why = WhyRdpmcDoesNotFault(); !why.empty()) GTEST_SKIP() << why;
  ScopedReadFaultHandler handler;
  ASSERT_TRUE(handler.ok());
  const std::uint64_t faults = ReadFaultsHandled();
  EXPECT_EQ(ReadOnePage(PmcSource::Hardware()), ReadStatus::kFaulted);
  EXPECT_EQ(ReadFaultsHandled(), faults + 1);
  // The thread goes on: the next read faults again (no retry loop hid it),
  // and a read that does not fault commits.
  EXPECT_EQ(ReadOnePage(PmcSource::Hardware()), ReadStatus::kFaulted);
  const std::uint64_t fake[1] = {5};
  EXPECT_EQ(ReadOnePage(PmcSource::Fake(fake)), ReadStatus::kCommitted);
  EXPECT_EQ(ReadFaultsHandled(), faults + 2);
}

// Without the handler the same read kills the process: the test above is not
// vacuous.
TEST(ReadFault, HardwareRdpmcFaultKillsWithoutTheHandler) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  if (const std::string why = WhyRdpmcDoesNotFault(); !why.empty()) GTEST_SKIP() << why;
  ExpectSegvKills(false, [] { ReadOnePage(PmcSource::Hardware()); });
}

// The same mechanism through the fake section, on any x86-64 host.
TEST(ReadFault, FakeSectionFaultIsReportedAndSurvived) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedReadFaultHandler handler;
  ASSERT_TRUE(handler.ok());
  const std::uint64_t faults = ReadFaultsHandled();
  EXPECT_EQ(ReadOnePage(PmcSource::Fake(kNonCanonical)), ReadStatus::kFaulted);
  EXPECT_EQ(ReadFaultsHandled(), faults + 1);
}

TEST(ReadFault, FakeSectionFaultKillsWithoutTheHandler) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ExpectSegvKills(false, [] { ReadOnePage(PmcSource::Fake(kNonCanonical)); });
}

// The handler runs on a thread's alternate signal stack (SA_ONSTACK), and
// the fault flag belongs to the thread that faulted.
TEST(ReadFault, FaultOnAThreadWithAnAlternateStack) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ScopedReadFaultHandler handler;
  ASSERT_TRUE(handler.ok());
  ReadStatus status = ReadStatus::kCommitted;
  std::thread t([&status] {
    ThreadRegistration registration;
    std::vector<char> stack(1 << 16);
    stack_t ss = {};
    ss.ss_sp = stack.data();
    ss.ss_size = stack.size();
    stack_t old = {};
    if (sigaltstack(&ss, &old) != 0) return;
    status = ReadOnePage(PmcSource::Fake(kNonCanonical));
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, nullptr);
  });
  t.join();
  EXPECT_EQ(status, ReadStatus::kFaulted);
  const std::uint64_t fake[1] = {5};
  EXPECT_EQ(ReadOnePage(PmcSource::Fake(fake)), ReadStatus::kCommitted);
}

// A read inside another signal's handler (which may have interrupted a
// read, or this handler) faults and survives in the same way.
ReadStatus g_status_in_handler = ReadStatus::kCommitted;
void ReadInHandler(int) { g_status_in_handler = ReadOnePage(PmcSource::Fake(kNonCanonical)); }

TEST(ReadFault, FaultInsideAnotherSignalHandler) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer runs signal handlers with every signal blocked, so a fault "
                  "inside one cannot be delivered";
#endif
  ScopedReadFaultHandler handler;
  ASSERT_TRUE(handler.ok());
  struct sigaction usr1 = {};
  usr1.sa_handler = &ReadInHandler;
  sigemptyset(&usr1.sa_mask);
  struct sigaction old = {};
  ASSERT_EQ(sigaction(SIGUSR1, &usr1, &old), 0);
  raise(SIGUSR1);
  sigaction(SIGUSR1, &old, nullptr);
  EXPECT_EQ(g_status_in_handler, ReadStatus::kFaulted);
}

// rdpmc outside any section raises the same kind of fault (SI_KERNEL) at an
// address that is no read section's abort handler: it must still kill.
TEST(ReadFault, RdpmcOutsideTheSectionStillKills) {
  if (const std::string why = WhyRdpmcDoesNotFault(); !why.empty()) GTEST_SKIP() << why;
  ExpectSegvKills(true, [] { RdpmcOutsideAnySection(); });
}
#endif  // __x86_64__

// A wild access anywhere else still kills with SIGSEGV.
TEST(ReadFault, OtherSegvStillKills) {
  ExpectSegvKills(true, [] {
    void* page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) _exit(4);
    *static_cast<volatile int*>(page) = 1;
  });
}

// A SIGSEGV sent by kill() (no faulting instruction to run again) still
// kills with SIGSEGV.
TEST(ReadFault, SentSegvStillKills) {
  ExpectSegvKills(true, [] { kill(getpid(), SIGSEGV); });
}

// A fault inside the read section that is not a #GP (an unmapped page) is
// not ours either: the section is aborted, the retry faults again under the
// restored default action.
TEST(ReadFault, PageFaultInsideTheSectionStillKills) {
  if (!SectionsUsable()) GTEST_SKIP() << "no counter-read section: " << ModeDescription();
  ExpectSegvKills(true, [] {
    void* map = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) _exit(4);
    ScopedPinHere pin;
    const auto* page = static_cast<const perf_event_mmap_page*>(map);
    CounterReadResult result;
    const std::uint64_t fake[1] = {5};
    ReadCountersOnCpu(pin.cpu(), {&page, 1}, &result, PmcSource::Fake(fake));
  });
}

void ChainedSigInfo(int sig, siginfo_t*, void*) { _exit(40 + sig - SIGSEGV); }
void ChainedPlain(int sig) { _exit(50 + sig - SIGSEGV); }

// A SIGSEGV that is not ours goes to the handler installed before ours.
TEST(ReadFault, ChainsToThePreviousHandler) {
  EXPECT_EXIT(
      {
        struct sigaction prev = {};
        prev.sa_sigaction = &ChainedSigInfo;
        prev.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &prev, nullptr);
        if (!InstallReadFaultHandler()) _exit(3);
        kill(getpid(), SIGSEGV);
        _exit(0);
      },
      ::testing::ExitedWithCode(40), "");
  EXPECT_EXIT(
      {
        signal(SIGSEGV, &ChainedPlain);
        if (!InstallReadFaultHandler()) _exit(3);
        kill(getpid(), SIGSEGV);
        _exit(0);
      },
      ::testing::ExitedWithCode(50), "");
}

}  // namespace
}  // namespace pmu::rseq
