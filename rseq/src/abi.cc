#include "pmu/rseq/abi.h"

#include <sched.h>
#include <sys/auxv.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "pmu/rseq/arch.h"

#ifndef AT_RSEQ_FEATURE_SIZE
#define AT_RSEQ_FEATURE_SIZE 27  // Linux 6.3 auxv tag; older headers lack it.
#endif

namespace pmu::rseq {
namespace detail {

__thread struct ::rseq* tls_area __attribute__((tls_model("initial-exec"))) = nullptr;

int FallbackCpu() noexcept {
  const int cpu = sched_getcpu();
  return cpu < 0 ? 0 : cpu;
}

}  // namespace detail

namespace {

// The area this library registers in kOwn mode (struct rseq is 32-byte
// aligned by its definition; the kernel requires that alignment).
__thread struct ::rseq own_area __attribute__((tls_model("initial-exec"))) = {
    0, static_cast<std::uint32_t>(RSEQ_CPU_ID_UNINITIALIZED), 0, 0};
__thread bool own_registered __attribute__((tls_model("initial-exec"))) = false;
static_assert(alignof(struct ::rseq) == 32 && sizeof(struct ::rseq) == 32);

int SysRseq(struct ::rseq* area, int flags) noexcept {
  const long r = syscall(__NR_rseq, area, static_cast<unsigned>(sizeof(*area)), flags, RSEQ_SIG);
  return r == 0 ? 0 : errno;
}

int RegisterOwnArea() noexcept {
  const int err = SysRseq(&own_area, 0);
  if (err == 0) {
    own_registered = true;
    detail::tls_area = &own_area;
  }
  return err;
}

void UnregisterOwnArea() noexcept {
  if (!own_registered) return;
  detail::tls_area = nullptr;
  SysRseq(&own_area, RSEQ_FLAG_UNREGISTER);
  own_registered = false;
}

// Unregisters the thread's own area when the thread exits (kOwn mode, for
// threads registered through EnsureRegistered()).
struct ExitUnregister {
  ~ExitUnregister() { UnregisterOwnArea(); }
};

void InstallExitUnregister() noexcept {
  static thread_local ExitUnregister hook;
  static_cast<void>(hook);
}

struct ModeState {
  Mode mode = Mode::kUnavailable;
  unsigned feature_size = 0;
  char description[256] = {};
};

struct ::rseq* GlibcArea() noexcept {
  return reinterpret_cast<struct ::rseq*>(static_cast<char*>(__builtin_thread_pointer()) +
                                          __rseq_offset);
}

ModeState Decide() noexcept {
  ModeState s;
  char* d = s.description;
  const std::size_t n = sizeof(s.description);
  if (!detail::arch::kSectionsSupported) {
    std::snprintf(d, n,
                  "rseq unavailable: no critical sections for this ISA; "
                  "using sched_getcpu()+atomics and locked rings");
    return s;
  }
  if (__rseq_size != 0) {
    const std::int32_t cpu_id = detail::LoadCpuId(GlibcArea());
    if (cpu_id < 0) {
      std::snprintf(d, n,
                    "rseq unavailable: glibc's registration failed (cpu_id=%d); "
                    "using sched_getcpu()+atomics and locked rings",
                    cpu_id);
      return s;
    }
    unsigned feature = 20;  // 20 and 32 both mean the original feature set
    if (__rseq_size != 20 && __rseq_size != 32) {
      const auto aux = static_cast<unsigned>(getauxval(AT_RSEQ_FEATURE_SIZE));
      feature = std::max(20u, std::min(__rseq_size, aux));
    }
    s.mode = Mode::kGlibc;
    s.feature_size = feature;
    std::snprintf(d, n,
                  "rseq: using glibc's registration (__rseq_size=%u, __rseq_offset=%td, "
                  "feature size %u)",
                  __rseq_size, __rseq_offset, feature);
    return s;
  }
  const int err = RegisterOwnArea();
  if (err == 0) {
    InstallExitUnregister();
    s.mode = Mode::kOwn;
    s.feature_size = 20;
    std::snprintf(d, n,
                  "rseq: glibc did not register; registering our own %zu-byte area per "
                  "thread (feature size 20)",
                  sizeof(struct ::rseq));
    return s;
  }
  const char* why = err == ENOSYS  ? " (kernel without rseq, or a seccomp filter refuses it)"
                    : err == EPERM ? " (refused, e.g. by a seccomp filter)"
                    : err == EBUSY ? " (another library registered rseq for this thread)"
                                   : "";
  std::snprintf(d, n,
                "rseq unavailable: rseq(2) failed with %s%s; "
                "using sched_getcpu()+atomics and locked rings",
                strerrorname_np(err), why);
  return s;
}

const ModeState& State() noexcept {
  static const ModeState state = Decide();
  return state;
}

}  // namespace

Mode CurrentMode() noexcept { return State().mode; }

std::string_view ModeName(Mode mode) noexcept {
  switch (mode) {
    case Mode::kGlibc:
      return "glibc";
    case Mode::kOwn:
      return "own";
    case Mode::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

std::string_view ModeDescription() noexcept { return State().description; }

unsigned FeatureSize() noexcept { return State().feature_size; }

bool EnsureRegistered() noexcept {
  switch (CurrentMode()) {
    case Mode::kGlibc:
      return detail::ThreadArea() != nullptr;
    case Mode::kOwn:
      if (own_registered) return true;
      if (RegisterOwnArea() != 0) return false;
      InstallExitUnregister();
      return true;
    case Mode::kUnavailable:
      break;
  }
  return false;
}

ThreadRegistration::ThreadRegistration() noexcept {
  if (CurrentMode() == Mode::kOwn && !own_registered) {
    registered_here_ = RegisterOwnArea() == 0;
  }
  active_ = detail::ThreadArea() != nullptr;
}

ThreadRegistration::~ThreadRegistration() {
  if (registered_here_) UnregisterOwnArea();
}

int CurrentCpu() noexcept {
  const struct ::rseq* area = detail::ThreadArea();
  if (area != nullptr) return static_cast<int>(detail::LoadCpuIdStart(area));
  return detail::FallbackCpu();
}

int PossibleCpuCount() noexcept {
  static const int count = [] {
    int n = 0;
    if (std::FILE* f = std::fopen("/sys/devices/system/cpu/possible", "re")) {
      // Format: ranges like "0-3" or "0,2-5"; the last number is the highest.
      int a = 0;
      int last = -1;
      while (std::fscanf(f, "%d", &a) == 1) {
        last = a;
        if (std::fgetc(f) == EOF) break;
      }
      std::fclose(f);
      n = last + 1;
    }
    if (n <= 0) n = static_cast<int>(sysconf(_SC_NPROCESSORS_CONF));
    return n <= 0 ? 1 : n;
  }();
  return count;
}

namespace detail {

struct ::rseq* ResolveAreaSlow() noexcept {
  switch (CurrentMode()) {
    case Mode::kGlibc: {
      struct ::rseq* area = GlibcArea();
      if (LoadCpuId(area) < 0) return nullptr;
      tls_area = area;
      return area;
    }
    case Mode::kOwn:
      return EnsureRegistered() ? tls_area : nullptr;
    case Mode::kUnavailable:
      break;
  }
  return nullptr;
}

}  // namespace detail
}  // namespace pmu::rseq
