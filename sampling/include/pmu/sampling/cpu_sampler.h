// CpuSampler: the thread that samples one CPU.
//
// It runs with affinity to its CPU N but never relies on it: an admin's
// taskset or a cpuset change may move it at any time. Every tick it reads
// each of CPU N's groups by the best path that is valid at that moment —
//   rdpmc inside the rseq counter-read section (only for groups whose pages
//     all allow user rdpmc and whose start-up check against read() agreed),
//   read(2) on CPU N itself (CPU confirmed through rseq before and after),
//   read(2) from wherever it runs (correct from any CPU; costs an IPI) —
// and pushes one GroupSample per group into the per-CPU ring of the CPU it
// runs on, through the rseq ring (TryPushOnCpu: the record's read_cpu always
// equals the ring it lands in). Attribution never depends on where the
// thread ran: the values belong to CPU N's fds and the record says cpu = N.
//
// Order: every reading carries the sampler's sequence number (`seq`, one per
// tick, increasing whichever thread ticks) and the schedule slot it belongs
// to (`tick`, shared by all samplers of a pipeline: PeriodicLoop). Readings
// of one CPU may sit in different rings (the thread migrated, or another
// thread ticked); the aggregator restores their order from `seq`.
//
// rdpmc is used for a group only after a validation on CPU N: every page
// allows user rdpmc with an active counter and extrapolable times
// (cap_user_time; without it the page's times are stale between sched-ins),
// and one reading through the section agrees with the read(2) that follows
// it, values and times. A group whose rdpmc read fails (index 0 after the
// PMU was taken, rdpmc withdrawn, a fault because user rdpmc was switched off
// at run time, times no longer current) falls back to read() and is
// validated again, the same way, at the earliest kRdpmcRecheckTicks later.
// A committed rdpmc value below the previous reading, or above it by more
// than any counter can count in the time between (kMaxEventsPerSecond), is
// refused the same way.
// Validation happens inside Tick() whenever it runs on CPU N. The hardware
// rdpmc is used only while rseq::InstallReadFaultHandler() is in place.
//
// A push whose ring stays unavailable through kPushAttempts attempts is
// counted in Stats::push_drops (the sample is lost, never silently).
//
// Thread safety: Start/Stop from the owning thread (the aggregator's);
// counters may be read from any thread.
#pragma once

#include <pmu/rseq/counter_read.h>
#include <pmu/rseq/per_cpu_ring.h>

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pmu/collectors/cpu_counters.h"
#include "pmu/collectors/sample.h"
#include "pmu/sampling/histogram.h"
#include "pmu/sampling/periodic_loop.h"

namespace pmu::sampling {

using SampleRing = rseq::PerCpuRing<collectors::GroupSample>;

// Upper bounds (seconds) of the read-duration histogram buckets.
const std::shared_ptr<const std::vector<double>>& ReadDurationBuckets();

struct SamplerOptions {
  std::chrono::nanoseconds interval = std::chrono::seconds(1);
  // CLOCK_MONOTONIC origin of the schedule slots (PeriodicLoop).
  int64_t epoch_ns = 0;
  // The thread wakes at least this often, to prove it is alive.
  std::chrono::nanoseconds heartbeat = std::chrono::seconds(1);
  // rdpmc source: hardware, or fake counters in tests.
  rseq::PmcSource pmc = rseq::PmcSource::Hardware();
  bool try_rdpmc = true;
  // Diagnostics (`make hw-check`): the thread runs on another CPU than the
  // one it samples, so every read is a remote read().
  bool pin_elsewhere = false;
  // Called after every tick, on the ticking thread, with the sampler's CPU
  // and the slot (the pipeline reads /proc/stat here at the resolution the
  // derived metrics need, without a wake-up of its own). Must not block.
  std::function<void(int cpu, uint64_t slot)> after_tick;
};

// The read path a diagnostic run forces through PMU_EXPORTER_READ_PATH:
// "auto" (or unset: rdpmc where validated, else read() on the CPU), "read"
// (never rdpmc), "remote" (never rdpmc, read() from another CPU). Returns
// false for any other value.
bool ApplyReadPathOverride(const char* value, SamplerOptions* options);

class CpuSampler {
 public:
  static constexpr uint64_t kRdpmcRecheckTicks = 100;
  static constexpr int kPushAttempts = 16;
  // No PMU counter counts faster than this (cycles at 6 GHz times a dozen
  // events per cycle stays far below): an rdpmc value that moved faster is
  // not a count.
  static constexpr double kMaxEventsPerSecond = 1e11;

  // `counters` may be shared with a stopped sampler of the configuration
  // this one replaces (a reload keeps unchanged fds open); `first_seq` then
  // continues that sampler's sequence (its next_seq()).
  CpuSampler(std::shared_ptr<collectors::CpuCounters> counters, SampleRing& ring,
             SamplerOptions options, uint64_t first_seq = 0);
  ~CpuSampler();  // Stop()
  CpuSampler(const CpuSampler&) = delete;
  CpuSampler& operator=(const CpuSampler&) = delete;

  void Start();
  // Returns within milliseconds. With `final_reading` the sampler thread
  // reads and pushes once more before it exits (a CPU going offline, a
  // reload): the last counts take the same path as every other reading.
  void Stop(bool final_reading = false);
  // One tick on the calling thread, for schedule slot `slot` (tests, and the
  // first reading).
  void Tick(uint64_t slot);

  int cpu() const { return counters_->cpu(); }
  collectors::CpuCounters& counters() { return *counters_; }
  const std::shared_ptr<collectors::CpuCounters>& shared_counters() const { return counters_; }
  // The sequence number the next reading will carry. REQUIRES: stopped.
  uint64_t next_seq() const { return seq_ + 1; }
  int64_t heartbeat_ns() const { return loop_.heartbeat_ns(); }

  struct Stats {
    uint64_t ticks = 0;
    uint64_t push_retries = 0;     // migrated between read and push: pushed again
    uint64_t push_drops = 0;       // a push that exhausted its retries: the sample is lost
    uint64_t rdpmc_fallbacks = 0;  // a group left the rdpmc path
    uint64_t rdpmc_aborts = 0;     // the counter-read section aborted
    uint64_t rdpmc_faults = 0;     // rdpmc faulted (user rdpmc switched off)
    collectors::ReadPath path = collectors::ReadPath::kRemoteRead;  // of the last group read
    std::map<int, uint64_t> read_errors;                            // errno -> count
    Histogram read_duration{ReadDurationBuckets()};                 // seconds per tick

    // Adds the counters of `other` (a stopped sampler of the same CPU);
    // `path` stays this one's.
    void Add(const Stats& other);
  };
  Stats stats() const;

 private:
  void Run();
  void UpdateReadPaths();
  bool ValidateRdpmc(size_t g);
  bool Plausible(size_t g, const rseq::CounterReadResult& r);
  void Remember(size_t g, const collectors::GroupSample& s);
  void NoteFault();
  bool ReadGroup(size_t g, collectors::GroupSample* s);
  bool TryRdpmc(size_t g, collectors::GroupSample* s);
  void Push(collectors::GroupSample& s);

  std::shared_ptr<collectors::CpuCounters> counters_;
  SampleRing& ring_;
  SamplerOptions options_;
  std::vector<bool> rdpmc_;                 // per group: on the rdpmc path
  std::vector<uint64_t> rdpmc_recheck_at_;  // per group: seq of the next validation
  bool rdpmc_disagreement_logged_ = false;
  bool rdpmc_implausible_logged_ = false;
  struct Last {  // the group's previous reading, by any path
    bool valid = false;
    int64_t ns = 0;
    uint32_t count = 0;
    std::array<uint64_t, collectors::kMaxGroupEvents> values{};
  };
  std::vector<Last> last_;
  uint64_t seq_ = 0;  // readings taken (ticks), the sequence of the next one

  std::thread thread_;
  PeriodicLoop loop_;

  mutable std::mutex stats_mutex_;
  Stats stats_;
};

}  // namespace pmu::sampling
