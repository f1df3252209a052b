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
// Waiting costs one futex(2) wait per wake-up, with an absolute
// CLOCK_MONOTONIC timeout on the loop's state word (no condition variable:
// its timed wait adds a wake-up call and a mutex round trip to every tick);
// RequestStop changes the word and wakes it.
//
// Thread safety: Run on the owning thread; RequestStop, Reset and
// heartbeat_ns from any thread. Reset() before running again after a stop.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

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
  static constexpr uint32_t kRunning = 0;
  static constexpr uint32_t kStop = 1;
  static constexpr uint32_t kStopAfterTick = 2;
  // Sleeps until CLOCK_MONOTONIC `deadline_ns` or a stop request; the state.
  uint32_t WaitUntil(int64_t deadline_ns);

  std::atomic<uint32_t> state_{kRunning};  // the futex word
  std::atomic<int64_t> heartbeat_ns_{0};
};

}  // namespace pmu::sampling
