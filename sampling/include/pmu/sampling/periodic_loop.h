// PeriodicLoop: the loop of a thread that does something every interval, on
// a schedule shared with other loops.
//
// Time is cut into slots of `interval` counted from `epoch_ns`
// (CLOCK_MONOTONIC): slot s starts at epoch_ns + s * interval. Run() calls
// `tick(s)` at the start of each slot after the one it was started in; loops
// with the same epoch and interval tick in the same slots, so slot numbers
// name the same interval on every CPU. After falling behind a loop skips the
// slots it missed instead of bursting. It wakes at least every `heartbeat` to
// stamp heartbeat_ns() so a watchdog can tell a waiting thread from a stuck
// one, and returns within milliseconds of RequestStop() — after one last
// `tick` in the next slot number when asked for a final tick.
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
  using Tick = std::function<void(uint64_t slot)>;

  void Run(std::chrono::nanoseconds interval, std::chrono::nanoseconds heartbeat, int64_t epoch_ns,
           const Tick& tick);
  // `final_tick`: Run() ticks once more before it returns.
  void RequestStop(bool final_tick = false);
  void Reset();
  // CLOCK_MONOTONIC ns of the last heartbeat (or of the last Reset()).
  int64_t heartbeat_ns() const { return heartbeat_ns_.load(std::memory_order_relaxed); }

  // The slot that contains `now_ns`.
  static uint64_t SlotAt(int64_t now_ns, int64_t epoch_ns, std::chrono::nanoseconds interval);

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool final_tick_ = false;
  std::atomic<int64_t> heartbeat_ns_{0};
};

}  // namespace pmu::sampling
