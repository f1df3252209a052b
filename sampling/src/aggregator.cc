#include "pmu/sampling/aggregator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace pmu::sampling {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

Aggregator::Aggregator(std::shared_ptr<const collectors::EventPlan> plan, int cpu_slots,
                       double min_running_ratio)
    : plan_(std::move(plan)),
      min_running_ratio_(min_running_ratio),
      cpus_(static_cast<size_t>(cpu_slots)),
      last_ratio_warning_(plan_->events.size()) {
  for (size_t c = 0; c < cpus_.size(); ++c) {
    CpuState& cpu = cpus_[c];
    cpu.totals.cpu = static_cast<int>(c);
    cpu.totals.events.resize(plan_->events.size());
    cpu.totals.group_starved.assign(plan_->groups.size(), false);
    cpu.previous.resize(plan_->events.size());
    cpu.position.resize(plan_->groups.size());
    cpu.zero_running_streak.assign(plan_->groups.size(), 0);
    cpu.tick_deltas.assign(plan_->events.size(), kNaN);
  }
}

void Aggregator::Ingest(const collectors::GroupSample& s) {
  if (s.cpu < 0 || static_cast<size_t>(s.cpu) >= cpus_.size()) return;
  if (s.group >= plan_->groups.size()) return;
  const auto& members = plan_->groups[s.group].members;
  CpuState& cpu = cpus_[static_cast<size_t>(s.cpu)];
  GroupPosition& position = cpu.position[s.group];
  if (position.valid && (s.generation < position.generation ||
                         (s.generation == position.generation && s.seq <= position.seq))) {
    std::lock_guard lock(mutex_);
    ++cpu.totals.stale;
    return;
  }
  const bool new_generation = !position.valid || position.generation != s.generation;
  position = {true, s.generation, s.seq};

  if (cpu.tick_open && (cpu.tick_seq != s.seq || cpu.tick_generation != s.generation)) {
    FlushTick(s.cpu, cpu);
  }
  if (!cpu.tick_open) {
    cpu.tick_open = true;
    cpu.tick_seq = s.seq;
    cpu.tick_generation = s.generation;
    cpu.tick = s.tick;
    cpu.tick_groups = 0;
    cpu.tick_groups_expected = s.groups_in_tick;
    cpu.tick_fresh = false;
  }
  cpu.tick_end_ns = s.timestamp_ns;
  cpu.tick_fresh = cpu.tick_fresh || new_generation;

  uint64_t group_d_enabled = 0;
  uint64_t group_d_running = 0;
  bool group_valid = false;
  bool resynced = false;
  {
    std::lock_guard lock(mutex_);
    cpu.seen = true;
    cpu.totals.has_path = true;
    cpu.totals.last_path = s.path;
    ++cpu.totals.group_samples;
    for (size_t i = 0; i < members.size() && i < s.count; ++i) {
      const size_t ev = members[i];
      Previous& prev = cpu.previous[ev];
      EventTotals& tot = cpu.totals.events[ev];
      tot.seen = true;
      ++tot.samples;
      cpu.tick_deltas[ev] = kNaN;
      if (new_generation || !prev.valid) {
        // New fds count from zero: their whole count is new.
        prev = Previous{true, 0, 0, 0};
      } else if (s.values[i] < prev.value || s.time_enabled < prev.enabled ||
                 s.time_running < prev.running) {
        // A live fd never goes backwards: resynchronise, add nothing.
        prev = Previous{true, s.values[i], s.time_enabled, s.time_running};
        resynced = true;
        continue;
      }
      const uint64_t d_value = s.values[i] - prev.value;
      const uint64_t d_enabled = s.time_enabled - prev.enabled;
      const uint64_t d_running = s.time_running - prev.running;
      tot.enabled_ns += d_enabled;
      tot.running_ns += d_running;
      prev.enabled = s.time_enabled;
      prev.running = s.time_running;
      if (d_enabled > 0) {
        tot.last_running_ratio =
            std::min(1.0, static_cast<double>(d_running) / static_cast<double>(d_enabled));
      }
      if (!new_generation) {
        group_valid = true;
        group_d_enabled = d_enabled;
        group_d_running = d_running;
      }
      if (d_running == 0) {
        // Did not run (or its times did not move): the count is unknown for
        // this interval; whatever it counted is added with the next interval
        // that has running time.
        continue;
      }
      prev.value = s.values[i];
      double delta = static_cast<double>(d_value);
      if (d_running >= d_enabled) {
        tot.exact += d_value;
      } else {
        delta = delta * static_cast<double>(d_enabled) / static_cast<double>(d_running);
        tot.scaled += delta;
      }
      if (!new_generation) cpu.tick_deltas[ev] = delta;
    }
    if (resynced) ++cpu.totals.resyncs;
  }
  if (resynced) {
    const auto now = std::chrono::steady_clock::now();
    if (cpu.last_resync_warning == std::chrono::steady_clock::time_point{} ||
        now - cpu.last_resync_warning >= kResyncWarningPeriod) {
      cpu.last_resync_warning = now;
      spdlog::warn(
          "cpu {}: group '{}' read lower than its previous reading on the same fd; the baseline "
          "moved, nothing was added (pmu_exporter_reading_resyncs_total; next warning for this "
          "CPU in {} minutes at the earliest)",
          s.cpu, plan_->groups[s.group].name, kResyncWarningPeriod.count());
    }
  }
  ++cpu.tick_groups;
  if (group_valid) NoteRunning(s.cpu, cpu, s.group, group_d_enabled, group_d_running);
  if (cpu.tick_groups_expected > 0 && cpu.tick_groups >= cpu.tick_groups_expected) {
    FlushTick(s.cpu, cpu);
  }
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
      cpu.totals.group_starved[group] = true;
    }
    return;
  }
  if (cpu.totals.group_starved[group]) {
    spdlog::info("cpu {}: group '{}' is counting again", cpu_number, g.name);
    std::lock_guard lock(mutex_);
    cpu.totals.group_starved[group] = false;
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
  record.end_ns = cpu.tick_end_ns;
  record.event_deltas = cpu.tick_deltas;
  // An interval needs a start on the same fds: the first tick after
  // (re)opening has none.
  const bool interval = cpu.has_last_tick && !cpu.tick_fresh;
  if (interval) {
    record.start_ns = cpu.last_tick_end_ns;
    record.slots = cpu.tick > cpu.last_tick ? cpu.tick - cpu.last_tick : 0;
    for (RoundObserver* o : observers_) o->OnInterval(record);
  }
  if (interval) {
    const bool whole = record.slots == 1 && cpu.tick_groups_expected > 0 &&
                       cpu.tick_groups >= cpu.tick_groups_expected;
    NoteHost(cpu_number, record, whole);
  }
  cpu.has_last_tick = true;
  cpu.last_tick = cpu.tick;
  cpu.last_tick_end_ns = cpu.tick_end_ns;
  cpu.tick_open = false;
  std::fill(cpu.tick_deltas.begin(), cpu.tick_deltas.end(), kNaN);
}

void Aggregator::NoteHost(int cpu, const IntervalRecord& record, bool whole) {
  if (!cpus_[static_cast<size_t>(cpu)].active) return;
  if (host_decided_ && record.tick <= host_decided_through_) return;
  PendingHostSlot& slot = pending_host_[record.tick];
  if (!whole) {
    slot.broken = true;
    return;
  }
  auto& deltas = slot.deltas[cpu];
  deltas.assign(record.event_deltas.begin(), record.event_deltas.end());
  IntervalRecord copy = record;
  copy.event_deltas = deltas;
  slot.records[cpu] = copy;
}

void Aggregator::ResolveHost(bool force_oldest) {
  std::vector<IntervalRecord> records;
  while (!pending_host_.empty()) {
    auto it = pending_host_.begin();
    const uint64_t tick = it->first;
    PendingHostSlot& slot = it->second;
    bool ready = true;
    bool complete = !slot.broken;
    size_t required = 0;
    for (size_t c = 0; c < cpus_.size(); ++c) {
      const CpuState& cpu = cpus_[c];
      if (!cpu.active || cpu.active_since >= tick) continue;
      ++required;
      if (!cpu.has_last_tick || cpu.last_tick < tick) {
        ready = false;
        break;
      }
      if (slot.records.count(static_cast<int>(c)) == 0) complete = false;
    }
    const bool forced = force_oldest && pending_host_.size() > kMaxPendingHostSlots;
    if (!ready && !forced) break;
    complete = complete && ready && required > 0;
    if (complete) {
      records.clear();
      for (const auto& [cpu, record] : slot.records) {
        if (cpus_[static_cast<size_t>(cpu)].active_since < tick) records.push_back(record);
      }
      const HostInterval host{tick, records};
      for (RoundObserver* o : observers_) o->OnHostInterval(host);
    } else {
      for (RoundObserver* o : observers_) o->OnHostIntervalIncomplete(tick);
    }
    host_decided_ = true;
    host_decided_through_ = tick;
    pending_host_.erase(it);
  }
}

void Aggregator::EndRound() { ResolveHost(/*force_oldest=*/true); }

void Aggregator::SetCpuActive(int cpu, bool active, uint64_t slot) {
  if (cpu < 0 || static_cast<size_t>(cpu) >= cpus_.size()) return;
  CpuState& state = cpus_[static_cast<size_t>(cpu)];
  state.active = active;
  if (active) state.active_since = slot;
  ResolveHost(/*force_oldest=*/false);
}

void Aggregator::Seed(const AggregateSnapshot& previous) {
  if (!previous.plan) return;
  const auto& old_events = previous.plan->events;
  std::lock_guard lock(mutex_);
  for (const auto& cpu : previous.cpus) {
    if (cpu.cpu < 0 || static_cast<size_t>(cpu.cpu) >= cpus_.size()) continue;
    CpuState& state = cpus_[static_cast<size_t>(cpu.cpu)];
    state.totals.group_samples = cpu.group_samples;
    state.totals.resyncs = cpu.resyncs;
    state.totals.stale = cpu.stale;
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
        state.totals.events[ev] = cpu.events[old];
      }
    }
  }
}

void Aggregator::ContinueFrom(const Aggregator& previous, int cpu) {
  if (cpu < 0 || static_cast<size_t>(cpu) >= cpus_.size() ||
      static_cast<size_t>(cpu) >= previous.cpus_.size()) {
    return;
  }
  const CpuState& then = previous.cpus_[static_cast<size_t>(cpu)];
  std::lock_guard lock(mutex_);
  CpuState& now = cpus_[static_cast<size_t>(cpu)];
  now.previous = then.previous;
  now.position = then.position;
}

AggregateSnapshot Aggregator::TakeSnapshot() const {
  AggregateSnapshot snap;
  snap.plan = plan_;
  std::lock_guard lock(mutex_);
  for (const CpuState& cpu : cpus_) {
    if (cpu.seen) snap.cpus.push_back(cpu.totals);
  }
  return snap;
}

}  // namespace pmu::sampling
