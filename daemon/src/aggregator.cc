#include "pmu/daemon/aggregator.h"

namespace pmu::daemon {

Aggregator::Aggregator(std::shared_ptr<const collectors::EventPlan> plan, int cpu_slots)
    : plan_(std::move(plan)), cpus_(static_cast<size_t>(cpu_slots)) {
  for (auto& cpu : cpus_) {
    cpu.totals.resize(plan_->events.size());
    cpu.previous.resize(plan_->events.size());
  }
}

void Aggregator::Ingest(const collectors::GroupSample& s) {
  if (s.cpu < 0 || static_cast<size_t>(s.cpu) >= cpus_.size()) return;
  if (s.group >= plan_->groups.size()) return;
  const auto& members = plan_->groups[s.group].members;
  std::lock_guard lock(mutex_);
  CpuState& cpu = cpus_[static_cast<size_t>(s.cpu)];
  cpu.seen = true;
  ++samples_ingested_;
  for (size_t i = 0; i < members.size() && i < s.count; ++i) {
    const size_t ev = members[i];
    Previous& prev = cpu.previous[ev];
    EventTotals& tot = cpu.totals[ev];
    // A new fd generation, or a counter that went backwards (which a live fd
    // never does), starts from zero.
    if (!prev.valid || prev.generation != s.generation || s.values[i] < prev.value ||
        s.time_enabled < prev.enabled || s.time_running < prev.running) {
      prev = Previous{s.generation, true, 0, 0, 0};
    }
    const uint64_t d_value = s.values[i] - prev.value;
    const uint64_t d_enabled = s.time_enabled - prev.enabled;
    const uint64_t d_running = s.time_running - prev.running;
    if (d_running > 0) {
      tot.count += static_cast<double>(d_value) * static_cast<double>(d_enabled) /
                   static_cast<double>(d_running);
    }
    if (d_enabled > 0) {
      tot.last_running_ratio = static_cast<double>(d_running) / static_cast<double>(d_enabled);
    }
    tot.enabled_seconds += static_cast<double>(d_enabled) * 1e-9;
    tot.running_seconds += static_cast<double>(d_running) * 1e-9;
    tot.seen = true;
    ++tot.samples;
    prev.value = s.values[i];
    prev.enabled = s.time_enabled;
    prev.running = s.time_running;
  }
}

void Aggregator::Seed(const AggregateSnapshot& previous) {
  if (!previous.plan) return;
  const auto& old_events = previous.plan->events;
  std::lock_guard lock(mutex_);
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
    if (!cpus_[c].seen) continue;
    snap.cpus.push_back({static_cast<int>(c), cpus_[c].totals});
  }
  return snap;
}

uint64_t Aggregator::samples_ingested() const {
  std::lock_guard lock(mutex_);
  return samples_ingested_;
}

}  // namespace pmu::daemon
