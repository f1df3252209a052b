#include "pmu/daemon/pipeline.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <stdexcept>

#include "pmu/collectors/topology.h"

namespace pmu::daemon {
namespace {

bool Contains(const std::vector<int>& sorted, int cpu) {
  return std::binary_search(sorted.begin(), sorted.end(), cpu);
}

}  // namespace

Pipeline::Pipeline(const config::Config& config, collectors::PerfSyscalls& sys,
                   const std::string& sysfs_root, const AggregateSnapshot* carry,
                   SamplerOptions sampler_options)
    : config_(config), sys_(sys), sysfs_root_(sysfs_root), sampler_options_(sampler_options) {
  sampler_options_.interval = config.sampling.interval;
  const std::vector<int> possible = collectors::PossibleCpus(sysfs_root_);
  selectable_ = config.sampling.all_cpus ? possible : config.sampling.cpus;
  const std::vector<int> cpus = WantedCpus();
  for (int cpu : config.sampling.cpus) {
    if (!Contains(cpus, cpu)) {
      spdlog::warn("cpu {} is configured but offline; sampled when it comes online", cpu);
    }
  }
  if (cpus.empty()) throw std::runtime_error("none of the configured CPUs is online");

  plan_ = std::make_shared<collectors::EventPlan>(
      collectors::BuildEventPlan(config.events, sys, cpus.front()));
  if (plan_->SupportedCount() == 0) {
    spdlog::warn("none of the {} configured events can be counted on this host; only "
                 "pmu_event_supported is exported",
                 plan_->events.size());
  }

  // Every selectable CPU may come online: make room for all of their fds.
  collectors::EnsureFdLimit(selectable_.size(), plan_->SupportedCount());

  int slots = 1;
  for (int cpu : possible) slots = std::max(slots, cpu + 1);
  for (int cpu : selectable_) slots = std::max(slots, cpu + 1);
  aggregator_ = std::make_unique<Aggregator>(plan_, slots, config.sampling.min_running_ratio);
  if (carry != nullptr) {
    // Only CPUs this configuration selects carry over; a CPU dropped from the
    // configuration disappears like a removed event.
    AggregateSnapshot kept{carry->plan, {}};
    for (const auto& cpu : carry->cpus) {
      if (Contains(selectable_, cpu.cpu)) kept.cpus.push_back(cpu);
    }
    aggregator_->Seed(kept);
  }
  // Per-interval derived metrics; refuses a configuration over max_series.
  derived_ = std::make_unique<DerivedEngine>(config, *plan_, selectable_);
  aggregator_->AddObserver(derived_.get());

  // An empty CPU list means "every CPU the kernel lists", which follows
  // hotplug without extra work.
  stats_ = std::make_unique<KernelStatsCollector>(
      config.stats, sysfs_root, config.sampling.all_cpus ? std::vector<int>{} : selectable_);
  stats_->set_max_age(config.sampling.interval);

  // Room for a few ticks of every group between two drains.
  const size_t per_tick = std::max<size_t>(plan_->groups.size(), 1);
  ring_ = std::make_unique<SampleRing>(slots, std::bit_ceil(std::max<size_t>(64, per_tick * 8)));

  for (int cpu : cpus) StartCpu(cpu, /*start_thread=*/false);
  spdlog::info("counting {} of {} events in {} groups on {} CPUs ({} perf fds), every {}",
               plan_->SupportedCount(), plan_->events.size(), plan_->groups.size(), cpus.size(),
               open_fds(), config::FormatDuration(config.sampling.interval));
}

Pipeline::~Pipeline() {
  StopSamplers();
  {
    std::lock_guard lock(mutex_);
    samplers_.clear();  // closes every perf fd
  }
  aggregator_.reset();  // before the observer it points to
}

std::vector<int> Pipeline::WantedCpus() const {
  std::vector<int> wanted;
  for (int cpu : collectors::OnlineCpus(sysfs_root_)) {
    if (Contains(selectable_, cpu)) wanted.push_back(cpu);
  }
  return wanted;
}

void Pipeline::StartCpu(int cpu, bool start_thread) {
  const uint32_t generation = ++generation_[cpu];
  auto counters = std::make_unique<collectors::CpuCounters>(sys_, *plan_, cpu, generation);
  auto sampler = std::make_unique<CpuSampler>(std::move(counters), *ring_, sampler_options_);
  if (start_thread) sampler->Start();
  std::lock_guard lock(mutex_);
  samplers_[cpu] = std::move(sampler);
}

void Pipeline::StopCpu(int cpu) {
  std::unique_ptr<CpuSampler> sampler;
  {
    std::lock_guard lock(mutex_);
    auto it = samplers_.find(cpu);
    if (it == samplers_.end()) return;
    sampler = std::move(it->second);
    samplers_.erase(it);
  }
  sampler->Stop();
  Drain();  // its last samples, before its fds close
}

void Pipeline::SampleOnce() {
  {
    std::lock_guard lock(mutex_);
    for (auto& [cpu, sampler] : samplers_) sampler->Tick();
  }
  Drain();
}

void Pipeline::StartSamplers() {
  std::lock_guard lock(mutex_);
  for (auto& [cpu, sampler] : samplers_) sampler->Start();
  running_ = true;
}

void Pipeline::StopSamplers() {
  std::lock_guard lock(mutex_);
  for (auto& [cpu, sampler] : samplers_) sampler->Stop();
  running_ = false;
}

void Pipeline::Drain() {
  ring_->DrainAll([this](int ring_cpu, const collectors::GroupSample& s) {
    if (s.read_cpu != ring_cpu) ++misattributed_;
    aggregator_->Ingest(s);
  });
  aggregator_->EndRound();
  derived_->EndRound();
}

void Pipeline::ProcStatTick() {
  if (!derived_->NeedsProcStat()) return;
  derived_->OnProcStat(collectors::ParseProcStat(sysfs_root_, ticks_per_second_),
                       collectors::MonotonicNanos());
}

bool Pipeline::CheckHotplug() {
  std::vector<int> wanted;
  try {
    wanted = WantedCpus();
  } catch (const std::exception& e) {
    // Runs on the aggregator thread: never let it die; look again next time.
    if (!hotplug_read_failed_) spdlog::error("CPU hotplug check: {}; retrying", e.what());
    hotplug_read_failed_ = true;
    return false;
  }
  hotplug_read_failed_ = false;
  std::vector<int> running = cpus();
  bool changed = false;
  for (int cpu : running) {
    if (Contains(wanted, cpu)) continue;
    StopCpu(cpu);
    ++hotplug_events_;
    changed = true;
    spdlog::info("cpu {} went offline: sampler stopped, perf fds closed; its totals are kept",
                 cpu);
  }
  for (int cpu : wanted) {
    if (Contains(running, cpu)) continue;
    StartCpu(cpu, running_);
    ++hotplug_events_;
    changed = true;
    spdlog::info("cpu {} came online: perf fds reopened (generation {}), sampling resumed", cpu,
                 generation_[cpu]);
  }
  return changed;
}

std::vector<int> Pipeline::cpus() const {
  std::lock_guard lock(mutex_);
  std::vector<int> out;
  for (const auto& [cpu, sampler] : samplers_) out.push_back(cpu);
  return out;
}

size_t Pipeline::open_fds() const {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (const auto& [cpu, sampler] : samplers_) n += sampler->counters().open_fds();
  return n;
}

int64_t Pipeline::OldestHeartbeatNs() const {
  std::lock_guard lock(mutex_);
  int64_t oldest = collectors::MonotonicNanos();
  if (!running_) return oldest;
  for (const auto& [cpu, sampler] : samplers_) oldest = std::min(oldest, sampler->heartbeat_ns());
  return oldest;
}

PipelineStats Pipeline::Stats() const {
  PipelineStats out;
  out.ring_drops = ring_->drops();
  out.ring_aborts = ring_->aborts();
  out.ring_fallbacks = ring_->fallbacks();
  std::lock_guard lock(mutex_);
  out.misattributed = misattributed_;
  out.hotplug_events = hotplug_events_;
  for (int cpu : selectable_) {
    PipelineStats::Cpu c;
    c.cpu = cpu;
    auto it = samplers_.find(cpu);
    c.online = it != samplers_.end();
    if (c.online) c.sampler = it->second->stats();
    out.cpus.push_back(std::move(c));
  }
  return out;
}

}  // namespace pmu::daemon
