#include "pmu/sampling/periodic_loop.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <ctime>

#include "pmu/collectors/cpu_counters.h"

namespace pmu::sampling {

uint64_t PeriodicLoop::SlotAt(int64_t now_ns, int64_t epoch_ns, std::chrono::nanoseconds interval) {
  if (now_ns <= epoch_ns || interval.count() <= 0) return 0;
  return static_cast<uint64_t>((now_ns - epoch_ns) / interval.count());
}

uint32_t PeriodicLoop::WaitUntil(int64_t deadline_ns) {
  const timespec deadline{static_cast<time_t>(deadline_ns / 1'000'000'000),
                          static_cast<long>(deadline_ns % 1'000'000'000)};
  for (;;) {
    const uint32_t state = state_.load(std::memory_order_acquire);
    if (state != kRunning) return state;
    // Absolute CLOCK_MONOTONIC timeout (FUTEX_WAIT_BITSET); returns at once
    // when the word is no longer kRunning.
    const long rc =
        syscall(SYS_futex, reinterpret_cast<uint32_t*>(&state_), FUTEX_WAIT_BITSET_PRIVATE,
                kRunning, &deadline, nullptr, FUTEX_BITSET_MATCH_ANY);
    if (rc != 0 && errno == ETIMEDOUT) return state_.load(std::memory_order_acquire);
    // Woken, EAGAIN (the word changed) or EINTR: look again.
    if (collectors::MonotonicNanos() >= deadline_ns) {
      return state_.load(std::memory_order_acquire);
    }
  }
}

void PeriodicLoop::Run(std::chrono::nanoseconds interval, std::chrono::nanoseconds heartbeat,
                       int64_t epoch_ns, const Tick& tick) {
  const auto slot_start = [&](uint64_t slot) {
    return epoch_ns + interval.count() * static_cast<int64_t>(slot);
  };
  uint64_t next = SlotAt(collectors::MonotonicNanos(), epoch_ns, interval) + 1;
  for (;;) {
    const int64_t wake =
        std::min(slot_start(next), collectors::MonotonicNanos() + heartbeat.count());
    const uint32_t state = WaitUntil(wake);
    if (state != kRunning) {
      if (state == kStopAfterTick) tick(next);
      return;
    }
    if (collectors::MonotonicNanos() >= slot_start(next)) {
      tick(next);
      // Fell behind: continue with the slot after the current one, no burst.
      next = std::max(next + 1, SlotAt(collectors::MonotonicNanos(), epoch_ns, interval) + 1);
    }
    heartbeat_ns_.store(collectors::MonotonicNanos(), std::memory_order_relaxed);
  }
}

void PeriodicLoop::RequestStop(bool final_tick) {
  state_.store(final_tick ? kStopAfterTick : kStop, std::memory_order_release);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&state_), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr,
          nullptr, 0);
}

void PeriodicLoop::Reset() {
  state_.store(kRunning, std::memory_order_release);
  heartbeat_ns_.store(collectors::MonotonicNanos(), std::memory_order_relaxed);
}

}  // namespace pmu::sampling
