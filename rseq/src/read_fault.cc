#include "pmu/rseq/read_fault.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>

#include "pmu/rseq/arch.h"

__thread int pmu::rseq::detail::tls_read_faulted __attribute__((tls_model("initial-exec"))) = 0;

namespace pmu::rseq {
namespace {

// The disposition the handler replaced; written before the handler is
// installed, read by the handler only.
struct sigaction g_previous;
std::atomic<bool> g_installed{false};
std::atomic<std::uint64_t> g_faults{0};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "used from a signal handler");

// Blocks what the kernel would have blocked for the previous handler (ours
// runs with SA_NODEFER); the return from our handler restores the mask.
void BlockAsForPrevious(const struct sigaction& prev) noexcept {
  sigset_t mask = prev.sa_mask;
  if ((prev.sa_flags & SA_NODEFER) == 0) sigaddset(&mask, SIGSEGV);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
}

// Hands a SIGSEGV that is not ours to whoever would have had it.
void PassOn(int sig, siginfo_t* info, void* context) noexcept {
  const struct sigaction& prev = g_previous;
  if ((prev.sa_flags & SA_SIGINFO) != 0) {
    if (prev.sa_sigaction != nullptr) {
      BlockAsForPrevious(prev);
      prev.sa_sigaction(sig, info, context);
      return;
    }
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    BlockAsForPrevious(prev);
    prev.sa_handler(sig);
    return;
  }
  // SIG_DFL or SIG_IGN: restore it and let the signal meet it. A fault
  // raised by an instruction (si_code > 0) happens again when this handler
  // returns; a SIGSEGV sent by a process (si_code <= 0) is sent again (our
  // handler runs with SA_NODEFER, so it is delivered at once).
  sigaction(SIGSEGV, &prev, nullptr);
  g_installed.store(false, std::memory_order_relaxed);
  if ((info == nullptr || info->si_code <= 0) && prev.sa_handler == SIG_DFL) raise(sig);
}

void OnSegv(int sig, siginfo_t* info, void* context) {
  if (info != nullptr && info->si_code == SI_KERNEL && context != nullptr &&
      detail::IsReadSectionAbortIp(detail::arch::SavedIp(context))) {
    // The kernel already aborted the section (pseudocode.h): returning
    // resumes at its abort handler, which finds this flag.
    detail::tls_read_faulted = 1;
    g_faults.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  PassOn(sig, info, context);
}

bool IsOurs(const struct sigaction& action) noexcept {
  return (action.sa_flags & SA_SIGINFO) != 0 && action.sa_sigaction == &OnSegv;
}

}  // namespace

bool InstallReadFaultHandler() noexcept {
  if (g_installed.load(std::memory_order_acquire)) return true;
  struct sigaction ours = {};
  ours.sa_sigaction = &OnSegv;
  // SA_NODEFER: a read that faults while this handler runs (in a signal
  // handler that interrupted it) must find SIGSEGV unblocked, or the kernel
  // kills the process instead of delivering it.
  ours.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&ours.sa_mask);
  struct sigaction current = {};
  if (sigaction(SIGSEGV, nullptr, &current) != 0) return false;
  if (!IsOurs(current)) g_previous = current;
  if (sigaction(SIGSEGV, &ours, nullptr) != 0) return false;
  g_installed.store(true, std::memory_order_release);
  return true;
}

void RemoveReadFaultHandler() noexcept {
  if (!g_installed.load(std::memory_order_acquire)) return;
  struct sigaction current = {};
  if (sigaction(SIGSEGV, nullptr, &current) == 0 && IsOurs(current)) {
    sigaction(SIGSEGV, &g_previous, nullptr);
  }
  g_installed.store(false, std::memory_order_release);
}

bool ReadFaultHandlerInstalled() noexcept { return g_installed.load(std::memory_order_acquire); }

std::uint64_t ReadFaultsHandled() noexcept { return g_faults.load(std::memory_order_relaxed); }

}  // namespace pmu::rseq
