#include "pmu/sampling/aggregator.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>

namespace pmu::sampling {

Aggregator::Aggregator(std::shared_ptr<const collectors::EventPlan> plan, int cpu_slots,
                       double min_running_ratio)
    : plan_(std::move(plan)),
      min_running_ratio_(min_running_ratio),
      cpus_(static_cast<size_t>(cpu_slots)),
      last_ratio_warning_(plan_->events.size()) {
  for (auto& cpu : cpus_) {
    cpu.totals.resize(plan_->events.size());
    cpu.previous.resize(plan_->events.size());
    cpu.zero_running_streak.assign(plan_->groups.size(), 0);
    cpu.starved.assign(plan_->groups.size(), false);
    cpu.tick_deltas.assign(plan_->events.size(), std::numeric_limits<double>::quiet_NaN());
  }
}

void Aggregator::Ingest(const collectors::GroupSample& s) {
  if (s.cpu < 0 || static_cast<size_t>(s.cpu) >= cpus_.size()) return;
  if (s.group >= plan_->groups.size()) return;
  const auto& members = plan_->groups[s.group].members;
  std::unique_lock lock(mutex_);
  CpuState& cpu = cpus_[static_cast<size_t>(s.cpu)];
  if (cpu.tick_open && cpu.tick != s.tick) {
    lock.unlock();
    FlushTick(s.cpu, cpu);
    lock.lock();
  }
  if (!cpu.tick_open) {
    cpu.tick_open = true;
    cpu.tick = s.tick;
    cpu.tick_start_ns = cpu.last_tick_end_ns;
  }
  cpu.tick_end_ns = s.timestamp_ns;
  cpu.seen = true;
  cpu.has_path = true;
  cpu.last_path = s.path;
  ++cpu.group_samples;
  ++samples_ingested_;
  uint64_t group_d_enabled = 0;
  uint64_t group_d_running = 0;
  bool group_valid = false;
  for (size_t i = 0; i < members.size() && i < s.count; ++i) {
    const size_t ev = members[i];
    Previous& prev = cpu.previous[ev];
    EventTotals& tot = cpu.totals[ev];
    // A new fd generation, or a counter that went backwards (which a live fd
    // never does), starts from zero; that first delta spans an unknown time,
    // so it does not make an interval.
    bool fresh = false;
    if (!prev.valid || prev.generation != s.generation || s.values[i] < prev.value ||
        s.time_enabled < prev.enabled || s.time_running < prev.running) {
      prev = Previous{s.generation, true, 0, 0, 0};
      fresh = true;
    }
    const uint64_t d_value = s.values[i] - prev.value;
    const uint64_t d_enabled = s.time_enabled - prev.enabled;
    const uint64_t d_running = s.time_running - prev.running;
    double scaled = std::numeric_limits<double>::quiet_NaN();
    if (d_running > 0) {
      scaled = static_cast<double>(d_value) * static_cast<double>(d_enabled) /
               static_cast<double>(d_running);
      tot.count += scaled;
    }
    if (d_enabled > 0) {
      tot.last_running_ratio = static_cast<double>(d_running) / static_cast<double>(d_enabled);
    }
    cpu.tick_deltas[ev] = fresh ? std::numeric_limits<double>::quiet_NaN() : scaled;
    tot.enabled_seconds += static_cast<double>(d_enabled) * 1e-9;
    tot.running_seconds += static_cast<double>(d_running) * 1e-9;
    tot.seen = true;
    ++tot.samples;
    prev.value = s.values[i];
    prev.enabled = s.time_enabled;
    prev.running = s.time_running;
    if (!fresh) {
      group_valid = true;
      group_d_enabled = d_enabled;
      group_d_running = d_running;
    }
  }
  lock.unlock();
  if (group_valid) NoteRunning(s.cpu, cpu, s.group, group_d_enabled, group_d_running);
}

void Aggregator::NoteRunning(int cpu_number, CpuState& cpu, uint32_t group, uint64_t d_enabled,
                             uint64_t d_running) {
  if (d_enabled == 0) return;
  const auto& g = plan_->groups[group];
  if (d_running == 0) {
    if (++cpu.zero_running_streak[group] == kStarvedIntervals) {
      std::string events;
      for (size_t ev : g.members) events += (events.empty() ? "" : ", ") + plan_->events[ev].name;
      spdlog::warn(
          "cpu {}: group '{}' ({}) was enabled but never counted for {} intervals: the PMU's "
          "counters are taken by something else — another profiler (perf, a tracing agent), "
          "the NMI watchdog (kernel.nmi_watchdog=1 holds a counter), or a hypervisor that "
          "exposes fewer counters; try fewer events in the group",
          cpu_number, g.name, events, kStarvedIntervals);
      std::lock_guard lock(mutex_);
      cpu.starved[group] = true;
    }
    return;
  }
  if (cpu.starved[group]) {
    spdlog::info("cpu {}: group '{}' is counting again", cpu_number, g.name);
    std::lock_guard lock(mutex_);
    cpu.starved[group] = false;
  }
  cpu.zero_running_streak[group] = 0;
  const double ratio = static_cast<double>(d_running) / static_cast<double>(d_enabled);
  if (ratio < min_running_ratio_) {
    for (size_t ev : g.members) WarnLowRatio(cpu_number, ev, ratio);
  }
}

void Aggregator::WarnLowRatio(int cpu, size_t event, double ratio) {
  const auto now = std::chrono::steady_clock::now();
  auto& last = last_ratio_warning_[event];
  if (last != std::chrono::steady_clock::time_point{} && now - last < kRatioWarningPeriod) return;
  last = now;
  spdlog::warn(
      "event {} on cpu {} counted only {:.0f}% of its enabled time (multiplexed; "
      "[sampling] min_running_ratio is {:.0f}%): its count is scaled up and less exact; "
      "configure fewer hardware events or fewer per group (next warning for this event in "
      "{} minutes at the earliest)",
      plan_->events[event].name, cpu, ratio * 100, min_running_ratio_ * 100,
      kRatioWarningPeriod.count());
}

void Aggregator::FlushTick(int cpu_number, CpuState& cpu) {
  if (!cpu.tick_open) return;
  IntervalRecord record;
  record.cpu = cpu_number;
  record.tick = cpu.tick;
  record.start_ns = cpu.tick_start_ns;
  record.end_ns = cpu.tick_end_ns;
  record.event_deltas = cpu.tick_deltas;
  // An interval needs a start: the first tick after (re)opening has none.
  if (record.start_ns != 0) {
    for (RoundObserver* o : observers_) o->OnInterval(record);
  }
  cpu.last_tick_end_ns = cpu.tick_end_ns;
  cpu.tick_open = false;
  std::fill(cpu.tick_deltas.begin(), cpu.tick_deltas.end(),
            std::numeric_limits<double>::quiet_NaN());
}

void Aggregator::EndRound() {
  for (size_t c = 0; c < cpus_.size(); ++c) FlushTick(static_cast<int>(c), cpus_[c]);
}

void Aggregator::Seed(const AggregateSnapshot& previous) {
  if (!previous.plan) return;
  const auto& old_events = previous.plan->events;
  std::lock_guard lock(mutex_);
  for (const auto& cpu : previous.cpus) {
    if (cpu.cpu < 0 || static_cast<size_t>(cpu.cpu) >= cpus_.size()) continue;
    CpuState& state = cpus_[static_cast<size_t>(cpu.cpu)];
    state.group_samples = cpu.group_samples;
    state.seen = state.seen || cpu.group_samples > 0;
  }
  for (size_t ev = 0; ev < plan_->events.size(); ++ev) {
    const auto& now = plan_->events[ev];
    if (!now.supported) continue;
    for (size_t old = 0; old < old_events.size(); ++old) {
      const auto& then = old_events[old];
      if (then.name != now.name || !then.supported || then.attr.type != now.attr.type ||
          then.attr.config != now.attr.config) {
        continue;
      }
      for (const auto& cpu : previous.cpus) {
        if (cpu.cpu < 0 || static_cast<size_t>(cpu.cpu) >= cpus_.size()) continue;
        if (old >= cpu.events.size() || !cpu.events[old].seen) continue;
        CpuState& state = cpus_[static_cast<size_t>(cpu.cpu)];
        state.seen = true;
        state.totals[ev] = cpu.events[old];
      }
    }
  }
}

AggregateSnapshot Aggregator::TakeSnapshot() const {
  AggregateSnapshot snap;
  snap.plan = plan_;
  std::lock_guard lock(mutex_);
  for (size_t c = 0; c < cpus_.size(); ++c) {
    const CpuState& s = cpus_[c];
    if (!s.seen) continue;
    snap.cpus.push_back(
        {static_cast<int>(c), s.totals, s.starved, s.group_samples, s.has_path, s.last_path});
  }
  return snap;
}

uint64_t Aggregator::samples_ingested() const {
  std::lock_guard lock(mutex_);
  return samples_ingested_;
}

}  // namespace pmu::sampling
