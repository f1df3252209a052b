// Cost of one read(2) of a CPU-wide perf group, by where the reading thread
// runs, for groups of 1, 4 and 8 events: the per-CPU, per-tick cost of the
// read() paths the sampler can take.
//
//   BM_GroupRead/<events>/0   thread pinned to CPU N, group opened for CPU N
//                             (local read: the kernel reads the counters
//                             in place, no IPI)
//   BM_GroupRead/<events>/1   thread pinned to CPU M != N (remote read: the
//                             kernel sends an IPI to CPU N and waits)
//
// The group is opened through the collectors library (EventGroup::Open with
// the real perf syscalls), with software events only, so it runs on hosts
// without a hardware PMU. The rdpmc path is measured by bench/rseq
// (BM_ReadSectionFakePages): a VM without a PMU cannot rdpmc.
#include <benchmark/benchmark.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "pmu/bench/plan_builder.h"
#include "pmu/collectors/event_group.h"
#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/collectors/sample.h"

namespace {

using pmu::collectors::EventGroup;
using pmu::collectors::EventPlan;

// Eight distinct software events; a group of k takes the first k.
constexpr std::array<uint64_t, 8> kSoftwareConfigs = {
    PERF_COUNT_SW_CPU_CLOCK,       PERF_COUNT_SW_TASK_CLOCK,       PERF_COUNT_SW_CONTEXT_SWITCHES,
    PERF_COUNT_SW_CPU_MIGRATIONS,  PERF_COUNT_SW_PAGE_FAULTS,      PERF_COUNT_SW_PAGE_FAULTS_MIN,
    PERF_COUNT_SW_PAGE_FAULTS_MAJ, PERF_COUNT_SW_ALIGNMENT_FAULTS,
};

// The CPU whose counters are read.
constexpr int kCountedCpu = 0;

// One plan with a single group of `events` software events.
EventPlan SoftwareGroupPlan(size_t events) {
  EventPlan plan;
  const size_t group = pmu::bench::AddGroup(plan, "software");
  for (size_t i = 0; i < events; ++i) {
    pmu::bench::AddEvent(plan, group, "sw" + std::to_string(i), PERF_TYPE_SOFTWARE,
                         kSoftwareConfigs[i % kSoftwareConfigs.size()]);
  }
  return plan;
}

bool PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<size_t>(cpu), &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

// Some CPU other than kCountedCpu this thread may run on, or -1.
int OtherCpu() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (cpu != kCountedCpu && CPU_ISSET(static_cast<size_t>(cpu), &allowed)) return cpu;
  }
  return -1;
}

// Restores the thread's affinity when the benchmark ends.
class AffinityGuard {
 public:
  AffinityGuard() { saved_ok_ = sched_getaffinity(0, sizeof(saved_), &saved_) == 0; }
  ~AffinityGuard() {
    if (saved_ok_) sched_setaffinity(0, sizeof(saved_), &saved_);
  }
  AffinityGuard(const AffinityGuard&) = delete;
  AffinityGuard& operator=(const AffinityGuard&) = delete;

 private:
  cpu_set_t saved_{};
  bool saved_ok_ = false;
};

void BM_GroupRead(benchmark::State& state) {
  const auto events = static_cast<size_t>(state.range(0));
  const bool remote = state.range(1) != 0;
  AffinityGuard guard;
  const int reader_cpu = remote ? OtherCpu() : kCountedCpu;
  if (reader_cpu < 0 || !PinTo(reader_cpu)) {
    state.SkipWithError("cannot pin the reader (a remote read needs a second CPU)");
    return;
  }
  const EventPlan plan = SoftwareGroupPlan(events);
  EventGroup::OpenError error;
  std::unique_ptr<EventGroup> group =
      EventGroup::Open(pmu::collectors::DefaultPerfSyscalls(), plan, 0, kCountedCpu, &error);
  if (!group) {
    state.SkipWithError(("perf_event_open: " + error.message).c_str());
    return;
  }
  pmu::collectors::GroupSample sample;
  for (auto _ : state) {
    if (group->Read(&sample) != 0) {
      state.SkipWithError("read of the group failed");
      break;
    }
    benchmark::DoNotOptimize(sample);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["events"] = static_cast<double>(events);
  state.counters["reader_cpu"] = reader_cpu;
  state.counters["counted_cpu"] = kCountedCpu;
}

BENCHMARK(BM_GroupRead)
    ->ArgNames({"events", "remote"})
    ->ArgsProduct({{1, 4, 8}, {0, 1}})
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
