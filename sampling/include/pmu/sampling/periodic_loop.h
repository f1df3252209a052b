// PeriodicLoop: the loop of a thread that does something every interval.
//
// Run() calls `tick` on an absolute schedule (no drift; after falling behind
// it starts afresh instead of bursting), wakes at least every `heartbeat` to
// stamp heartbeat_ns() so a watchdog can tell a waiting thread from a stuck
// one, and returns within milliseconds of RequestStop().
//
// Thread safety: Run on the owning thread; RequestStop, Reset and
// heartbeat_ns from any thread. Reset() before running again after a stop.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

namespace pmu::sampling {

class PeriodicLoop {
 public:
  void Run(std::chrono::nanoseconds interval, std::chrono::nanoseconds heartbeat,
           const std::function<void()>& tick);
  void RequestStop();
  void Reset();
  // CLOCK_MONOTONIC ns of the last heartbeat (or of the last Reset()).
  int64_t heartbeat_ns() const { return heartbeat_ns_.load(std::memory_order_relaxed); }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<int64_t> heartbeat_ns_{0};
};

}  // namespace pmu::sampling
