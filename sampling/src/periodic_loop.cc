#include "pmu/sampling/periodic_loop.h"

#include <algorithm>

#include "pmu/collectors/cpu_counters.h"

namespace pmu::sampling {

uint64_t PeriodicLoop::SlotAt(int64_t now_ns, int64_t epoch_ns, std::chrono::nanoseconds interval) {
  if (now_ns <= epoch_ns || interval.count() <= 0) return 0;
  return static_cast<uint64_t>((now_ns - epoch_ns) / interval.count());
}

void PeriodicLoop::Run(std::chrono::nanoseconds interval, std::chrono::nanoseconds heartbeat,
                       int64_t epoch_ns, const Tick& tick) {
  using Clock = std::chrono::steady_clock;
  // steady_clock is CLOCK_MONOTONIC, the clock of epoch_ns.
  const auto slot_start = [&](uint64_t slot) {
    return Clock::time_point(std::chrono::nanoseconds(epoch_ns) +
                             interval * static_cast<int64_t>(slot));
  };
  uint64_t next = SlotAt(collectors::MonotonicNanos(), epoch_ns, interval) + 1;
  std::unique_lock lock(mutex_);
  for (;;) {
    const auto wake = std::min(slot_start(next), Clock::now() + heartbeat);
    if (cv_.wait_until(lock, wake, [this] { return stop_; })) {
      if (final_tick_) {
        lock.unlock();
        tick(next);
      }
      return;
    }
    if (Clock::now() >= slot_start(next)) {
      lock.unlock();
      tick(next);
      lock.lock();
      // Fell behind: continue with the slot after the current one, no burst.
      next = std::max(next + 1, SlotAt(collectors::MonotonicNanos(), epoch_ns, interval) + 1);
    }
    heartbeat_ns_.store(collectors::MonotonicNanos(), std::memory_order_relaxed);
  }
}

void PeriodicLoop::RequestStop(bool final_tick) {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
    final_tick_ = final_tick;
  }
  cv_.notify_all();
}

void PeriodicLoop::Reset() {
  std::lock_guard lock(mutex_);
  stop_ = false;
  final_tick_ = false;
  heartbeat_ns_.store(collectors::MonotonicNanos(), std::memory_order_relaxed);
}

}  // namespace pmu::sampling
