// Scale of the aggregator and the exposition: a synthetic source of N CPUs x
// M events with deterministic values drives the real
// pmu::sampling::Aggregator and the standard family sources' TextWriter.
//
//   BM_Aggregate/<cpus>/<events>  one round: every CPU's every group ingested
//                                 once (what the sampler side does per tick)
//   BM_Scrape/<cpus>/<events>     TakeSnapshot + one rendering (what one
//                                 snapshot's exposition of the counters costs,
//                                 without HTTP and kernel statistics; counters
//                                 give each stage's share: snapshot_ms,
//                                 render_ms — metrics::Rendered::Text(), the
//                                 buffer reserved from the previous size as
//                                 the daemon does; render_cpu_ms: the same
//                                 as the thread's CPU time, which other
//                                 load on the machine does not inflate —
//                                 and serve_ms: what a
//                                 request costs once the snapshot is rendered:
//                                 the cache lookup and the shared body, the
//                                 socket write not included)
//
// Counters: samples per round, exposition bytes, the process's VmRSS/VmHWM
// after the benchmark and before any of it (rss_base_kib). Run one
// <cpus>/<events> pair per process (--benchmark_filter) for a clean RSS.
#include <benchmark/benchmark.h>
#include <linux/perf_event.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "pmu/bench/plan_builder.h"
#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/sample.h"
#include "pmu/metrics/family_source.h"
#include "pmu/metrics/rendered.h"
#include "pmu/sampling/aggregator.h"

namespace {

using pmu::collectors::EventPlan;
using pmu::collectors::GroupSample;

// Largest group the synthetic plan forms (a typical number of general
// counters of an x86 PMU); M = 16 gives two groups.
constexpr size_t kGroupSize = 8;
constexpr uint64_t kTickNs = 1'000'000'000;  // one sampling interval

long g_base_rss_kib = 0;

// VmRSS or VmHWM of this process in KiB (0 when unreadable).
long StatusKib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  }
  return 0;
}

int64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::shared_ptr<const EventPlan> SyntheticPlan(size_t events) {
  auto plan = std::make_shared<EventPlan>();
  size_t group = 0;
  for (size_t i = 0; i < events; ++i) {
    if (i % kGroupSize == 0)
      group = pmu::bench::AddGroup(*plan, "group" + std::to_string(i / kGroupSize));
    pmu::bench::AddEvent(*plan, group, "synthetic_event_" + std::to_string(i), PERF_TYPE_RAW, i);
  }
  return plan;
}

// The test-only source: per (CPU, group) a GroupSample whose values grow by a
// fixed, distinct rate per (CPU, event) every round; the group runs 3/4 of
// the time it is enabled, so multiplex scaling is exercised.
class SyntheticSource {
 public:
  SyntheticSource(const EventPlan& plan, int cpus) {
    for (int cpu = 0; cpu < cpus; ++cpu) {
      for (size_t g = 0; g < plan.groups.size(); ++g) {
        GroupSample s;
        s.cpu = cpu;
        s.group = static_cast<uint32_t>(g);
        s.generation = 1;
        s.count = static_cast<uint32_t>(plan.groups[g].members.size());
        s.path = pmu::collectors::ReadPath::kLocalRead;
        samples_.push_back(s);
      }
    }
  }

  // Advances every sample by one tick; returns them.
  const std::vector<GroupSample>& NextRound() {
    ++round_;
    for (GroupSample& s : samples_) {
      s.timestamp_ns = static_cast<int64_t>(round_ * kTickNs);
      s.time_enabled = round_ * kTickNs;
      s.time_running = round_ * kTickNs / 4 * 3;
      const uint64_t base = 1000 + static_cast<uint64_t>(s.cpu) * 37 + s.group * 11;
      for (uint32_t i = 0; i < s.count; ++i) s.values[i] = round_ * (base + i);
    }
    return samples_;
  }

  size_t samples_per_round() const { return samples_.size(); }

 private:
  std::vector<GroupSample> samples_;
  uint64_t round_ = 0;
};

// The real aggregator fed by the synthetic source, sized by the benchmark's
// arguments (cpus, events).
struct Setup {
  explicit Setup(const benchmark::State& state)
      : cpus(static_cast<int>(state.range(0))),
        events(static_cast<size_t>(state.range(1))),
        plan(SyntheticPlan(events)),
        aggregator(plan, cpus),
        source(*plan, cpus) {}

  void IngestRound() {
    for (const GroupSample& s : source.NextRound()) aggregator.Ingest(s);
  }

  // Items (CPU x event series per iteration), sizes and memory of the process.
  void Report(benchmark::State& state) const {
    state.SetItemsProcessed(state.iterations() * cpus * static_cast<int64_t>(events));
    state.counters["cpus"] = cpus;
    state.counters["events"] = static_cast<double>(events);
    state.counters["rss_kib"] = static_cast<double>(StatusKib("VmRSS"));
    state.counters["hwm_kib"] = static_cast<double>(StatusKib("VmHWM"));
    state.counters["rss_base_kib"] = static_cast<double>(g_base_rss_kib);
  }

  const int cpus;
  const size_t events;
  const std::shared_ptr<const EventPlan> plan;
  pmu::sampling::Aggregator aggregator;
  SyntheticSource source;
};

void BM_Aggregate(benchmark::State& state) {
  Setup setup(state);
  setup.IngestRound();  // the first reading only sets the baseline
  for (auto _ : state) setup.IngestRound();
  setup.Report(state);
  state.counters["samples_per_round"] = static_cast<double>(setup.source.samples_per_round());
}

void BM_Scrape(benchmark::State& state) {
  Setup setup(state);
  for (int round = 0; round < 3; ++round) setup.IngestRound();
  size_t bytes = 0;
  // Where the time goes, per stage (wall clock, summed over iterations).
  std::chrono::steady_clock::duration snapshot{}, render{}, serve{};
  int64_t render_cpu_ns = 0;  // the rendering thread's CPU time (other load excluded)
  constexpr int kRequestsPerSnapshot = 100;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    pmu::sampling::AggregateSnapshot counters = setup.aggregator.TakeSnapshot();
    auto snap = std::make_shared<pmu::sampling::Snapshot>();
    snap->plan = counters.plan;
    snap->counters = std::move(counters.cpus);
    auto export_snapshot = std::make_shared<pmu::metrics::ExportSnapshot>();
    export_snapshot->sampling = std::move(snap);
    const auto t1 = std::chrono::steady_clock::now();
    const int64_t c1 = ThreadCpuNs();
    auto rendered = std::make_shared<pmu::metrics::Rendered>(export_snapshot, bytes);
    const std::shared_ptr<const std::string> text = rendered->Text();
    render_cpu_ns += ThreadCpuNs() - c1;
    const auto t2 = std::chrono::steady_clock::now();
    // Every further request of the same snapshot: the cached body.
    for (int request = 0; request < kRequestsPerSnapshot; ++request) {
      std::shared_ptr<const std::string> body = rendered->Text();
      benchmark::DoNotOptimize(body.get());
    }
    const auto t3 = std::chrono::steady_clock::now();
    snapshot += t1 - t0;
    render += t2 - t1;
    serve += (t3 - t2) / kRequestsPerSnapshot;
    bytes = text->size();
    benchmark::DoNotOptimize(text->data());
  }
  const auto per_iteration_ms = [&](std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count() /
           static_cast<double>(std::max<benchmark::IterationCount>(state.iterations(), 1));
  };
  setup.Report(state);
  state.counters["exposition_bytes"] = static_cast<double>(bytes);
  state.counters["snapshot_ms"] = per_iteration_ms(snapshot);
  state.counters["render_ms"] = per_iteration_ms(render);
  state.counters["render_cpu_ms"] =
      static_cast<double>(render_cpu_ns) / 1e6 /
      static_cast<double>(std::max<benchmark::IterationCount>(state.iterations(), 1));
  state.counters["serve_ms"] = per_iteration_ms(serve);
}

BENCHMARK(BM_Aggregate)
    ->ArgNames({"cpus", "events"})
    ->ArgsProduct({{64, 256, 1024}, {8, 16}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Scrape)
    ->ArgNames({"cpus", "events"})
    ->ArgsProduct({{64, 256, 1024}, {8, 16}})
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  g_base_rss_kib = StatusKib("VmRSS");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
