#include "pmu/sampling/periodic_loop.h"

#include <algorithm>

#include "pmu/collectors/cpu_counters.h"

namespace pmu::sampling {

void PeriodicLoop::Run(std::chrono::nanoseconds interval, std::chrono::nanoseconds heartbeat,
                       const std::function<void()>& tick) {
  using Clock = std::chrono::steady_clock;
  auto next = Clock::now() + interval;
  std::unique_lock lock(mutex_);
  for (;;) {
    const auto wake = std::min(next, Clock::now() + heartbeat);
    if (cv_.wait_until(lock, wake, [this] { return stop_; })) return;
    if (Clock::now() >= next) {
      lock.unlock();
      tick();
      lock.lock();
      next += interval;
      if (next < Clock::now()) next = Clock::now() + interval;  // fell behind: no burst
    }
    heartbeat_ns_.store(collectors::MonotonicNanos(), std::memory_order_relaxed);
  }
}

void PeriodicLoop::RequestStop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
}

void PeriodicLoop::Reset() {
  std::lock_guard lock(mutex_);
  stop_ = false;
  heartbeat_ns_.store(collectors::MonotonicNanos(), std::memory_order_relaxed);
}

}  // namespace pmu::sampling
