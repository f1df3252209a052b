// Surviving a fault inside the counter-read section.
//
// User rdpmc can be switched off while events stay open: writing 0 to
// /sys/bus/event_source/devices/cpu/rdpmc clears CR4.PCE on every CPU, yet
// the pages of events mapped before still say cap_user_rdpmc = 1, so the next
// rdpmc raises #GP and the thread receives SIGSEGV. The kernel aborts an rseq
// section before it delivers a signal (pseudocode.h, "Frame"), so the saved
// instruction pointer of that SIGSEGV is the abort_ip of a ReadPages section.
// The handler installed here recognises exactly that case — a fault the
// kernel raised itself (si_code SI_KERNEL) whose saved instruction pointer is
// the abort_ip of a descriptor in the pmu_rseq_read_cs table — marks the
// calling thread's read as faulted and returns, so the section ends as an
// ordinary abort and ReadCountersOnCpu() returns ReadStatus::kFaulted.
//
// Every other SIGSEGV is passed on unchanged: to the handler that was
// installed before this one (SA_SIGINFO or plain), or, when that was SIG_DFL
// or SIG_IGN, by restoring it and letting the signal happen again (a
// faulting instruction runs again and faults under the old disposition; a
// SIGSEGV sent by kill() is raised again), so the process dies exactly as
// it would have without this handler.
//
// What the caller does with kFaulted: read the group with read() from then
// on; before it uses rdpmc again it must revalidate (rdpmc stays off until
// someone turns it back on, and even then a reading must agree with read()).
//
// Thread safety: InstallReadFaultHandler() and RemoveReadFaultHandler() may be
// called from any thread but belong in main(): call Install once while the
// process is single-threaded, after every other SIGSEGV handler the process
// wants (it chains to the one it replaces; a handler installed later must
// chain to this one, or a rdpmc fault kills the process again). The handler
// itself is async-signal-safe: no allocation, no lock; it runs on the
// alternate signal stack of a thread that has one (SA_ONSTACK) and leaves
// SIGSEGV unblocked while it runs (SA_NODEFER), so a read in a signal handler
// that interrupted it survives too.
// REQUIRES: SIGSEGV is not blocked on a thread that reads with
// PmcSource::Hardware(): the kernel kills a process whose thread faults with
// SIGSEGV blocked, whatever the handler.
#ifndef PMU_RSEQ_READ_FAULT_H_
#define PMU_RSEQ_READ_FAULT_H_

#include <cstdint>

namespace pmu::rseq {

// Installs the SIGSEGV handler described above
// (SA_SIGINFO | SA_ONSTACK | SA_NODEFER).
// Idempotent. Returns false, with errno set, when sigaction() fails.
bool InstallReadFaultHandler() noexcept;

// Restores the disposition InstallReadFaultHandler() replaced, if the
// handler is still the installed one (tests).
void RemoveReadFaultHandler() noexcept;

// True while the handler is installed.
bool ReadFaultHandlerInstalled() noexcept;

// Faults the handler has turned into kFaulted since the process started, on
// all threads (for a self-metric).
std::uint64_t ReadFaultsHandled() noexcept;

namespace detail {

// The calling thread's "a read section faulted" flag: set by the handler,
// cleared and tested by ReadCountersOnCpu() around each section.
extern __thread int tls_read_faulted __attribute__((tls_model("initial-exec")));

inline void ClearReadFault() noexcept { __atomic_store_n(&tls_read_faulted, 0, __ATOMIC_RELAXED); }

// True (and clears the flag) when the handler marked the section that just
// aborted on this thread as faulted.
inline bool TakeReadFault() noexcept {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  return __atomic_exchange_n(&tls_read_faulted, 0, __ATOMIC_RELAXED) != 0;
}

// True when `ip` is the abort_ip of a ReadPages section (async-signal-safe;
// defined beside the sections in counter_read.cc).
bool IsReadSectionAbortIp(std::uintptr_t ip) noexcept;

}  // namespace detail
}  // namespace pmu::rseq

#endif  // PMU_RSEQ_READ_FAULT_H_
