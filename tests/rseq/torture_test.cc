// Torture tests of the rseq primitives, built against the library variant
// with the delay-injection hooks. The short versions run in `make test`;
// the `stress` ctest entries run the same binary with
// PMU_RSEQ_TORTURE_SECONDS set.
#include "torture.h"

#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "pmu/rseq/abi.h"
#include "pmu/rseq/inject.h"

extern char** environ;

namespace pmu::rseq::torture {

int RunAllScenariosAsChild();  // torture_main.cc

namespace {

Options ShortOptions() {
  Options o;
  o.seconds = ScenarioSeconds(2.0);
  return o;
}

void ExpectReport(const Report& r) {
  std::printf("[torture] %s\n", r.message.c_str());
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(RseqTorture, HooksAreCompiledIn) {
  EXPECT_TRUE(kInjectionCompiledIn) << "the torture binary must link pmu_rseq_hooks";
}

TEST(RseqTorture, PerCpuCounterExactTotals) { ExpectReport(RunCounter(ShortOptions())); }

TEST(RseqTorture, PerCpuRingExactlyOnceInOrder) { ExpectReport(RunRing(ShortOptions())); }

TEST(RseqTorture, CounterReadOnFlippingFakePages) { ExpectReport(RunCounterRead(ShortOptions())); }

TEST(RseqTorture, SameCpuPreemptionAborts) {
  if (CurrentMode() == Mode::kUnavailable) {
    GTEST_SKIP() << "no rseq here, so no aborts to observe: " << ModeDescription();
  }
  Options o;
  o.seconds = ScenarioSeconds(1.0);
  ExpectReport(RunSameCpuPreemption(o));
}

// ---- child processes --------------------------------------------------------

// Waits for `pid`; returns its exit code, or -1 (with a message) otherwise.
int WaitChild(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) std::printf("child killed by signal %d\n", WTERMSIG(status));
  return -1;
}

std::vector<char*> ChildEnv(std::vector<std::string>* storage,
                            const std::vector<std::string>& extra) {
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string var(*e);
    if (var.rfind("GLIBC_TUNABLES=", 0) == 0 || var.rfind("PMU_RSEQ_EXPECT_MODE=", 0) == 0)
      continue;
    storage->push_back(var);
  }
  for (const auto& v : extra) storage->push_back(v);
  std::vector<char*> env;
  for (auto& s : *storage) env.push_back(s.data());
  env.push_back(nullptr);
  return env;
}

[[noreturn]] void ExecSelfAsChild(const std::vector<std::string>& extra_env) {
  std::vector<std::string> storage;
  std::vector<char*> env = ChildEnv(&storage, extra_env);
  char arg0[] = "rseq_torture_child";
  char arg1[] = "--pmu_rseq_child=all";
  char* argv[] = {arg0, arg1, nullptr};
  execve("/proc/self/exe", argv, env.data());
  std::perror("execve /proc/self/exe");
  _exit(3);
}

// Makes rseq(2) fail with ENOSYS for this process and its descendants.
bool InstallRseqEnosysFilter() {
#if defined(__x86_64__)
  constexpr std::uint32_t kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
  constexpr std::uint32_t kArch = AUDIT_ARCH_AARCH64;
#else
  return false;
#endif
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rseq, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

TEST(RseqTortureEnv, GlibcTunableOffUsesOwnRegistration) {
  if (CurrentMode() == Mode::kUnavailable) {
    GTEST_SKIP() << "kernel refuses rseq here, own registration cannot be shown: "
                 << ModeDescription();
  }
  std::fflush(stdout);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ExecSelfAsChild({"GLIBC_TUNABLES=glibc.pthread.rseq=0", "PMU_RSEQ_EXPECT_MODE=own"});
  }
  EXPECT_EQ(WaitChild(pid), 0) << "child with GLIBC_TUNABLES=glibc.pthread.rseq=0 failed";
}

TEST(RseqTortureEnv, SeccompEnosysFallsBack) {
  std::fflush(stdout);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!InstallRseqEnosysFilter()) {
      std::perror("seccomp");
      _exit(77);
    }
    ExecSelfAsChild({"PMU_RSEQ_EXPECT_MODE=unavailable"});
  }
  const int code = WaitChild(pid);
  if (code == 77) GTEST_SKIP() << "could not install the seccomp filter";
  EXPECT_EQ(code, 0) << "child under a seccomp filter (rseq -> ENOSYS) failed";
}

TEST(RseqTortureEnv, SeccompEnosysWithTunableOffFallsBack) {
  std::fflush(stdout);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!InstallRseqEnosysFilter()) _exit(77);
    ExecSelfAsChild({"GLIBC_TUNABLES=glibc.pthread.rseq=0", "PMU_RSEQ_EXPECT_MODE=unavailable"});
  }
  const int code = WaitChild(pid);
  if (code == 77) GTEST_SKIP() << "could not install the seccomp filter";
  EXPECT_EQ(code, 0);
}

TEST(RseqTortureEnv, ForkedChildKeepsWorking) {
  std::fflush(stdout);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // No exec: the child inherits the parent's mode and registration.
    std::fflush(stdout);
    _exit(RunAllScenariosAsChild());
  }
  EXPECT_EQ(WaitChild(pid), 0) << "forked child failed";
}

}  // namespace
}  // namespace pmu::rseq::torture
