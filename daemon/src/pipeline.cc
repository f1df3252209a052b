#include "pmu/daemon/pipeline.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>

#include "pmu/collectors/topology.h"

namespace pmu::daemon {
namespace {

std::vector<int> SelectCpus(const config::SamplingConfig& sampling, const std::vector<int>& online) {
  if (sampling.all_cpus) return online;
  std::vector<int> selected;
  for (int cpu : sampling.cpus) {
    if (std::binary_search(online.begin(), online.end(), cpu)) {
      selected.push_back(cpu);
    } else {
      spdlog::warn("cpu {} is configured but offline; it is not sampled", cpu);
    }
  }
  return selected;
}

}  // namespace

Pipeline::Pipeline(const config::Config& config, collectors::PerfSyscalls& sys,
                   const std::string& sysfs_root, const AggregateSnapshot* carry) {
  const std::vector<int> online = collectors::OnlineCpus(sysfs_root);
  cpus_ = SelectCpus(config.sampling, online);
  if (cpus_.empty()) throw std::runtime_error("none of the configured CPUs is online");

  plan_ = std::make_shared<collectors::EventPlan>(
      collectors::BuildEventPlan(config.events, sys, cpus_.front()));
  if (plan_->SupportedCount() == 0) {
    spdlog::warn("none of the {} configured events can be counted on this host; only "
                 "pmu_event_supported is exported",
                 plan_->events.size());
  }

  int slots = 1;
  for (int cpu : collectors::PossibleCpus(sysfs_root)) slots = std::max(slots, cpu + 1);
  for (int cpu : cpus_) slots = std::max(slots, cpu + 1);
  aggregator_ = std::make_unique<Aggregator>(plan_, slots);
  if (carry != nullptr) {
    // Only CPUs this pipeline samples carry over; a CPU dropped from the
    // configuration disappears like a removed event.
    AggregateSnapshot kept{carry->plan, {}};
    for (const auto& cpu : carry->cpus) {
      if (std::binary_search(cpus_.begin(), cpus_.end(), cpu.cpu)) kept.cpus.push_back(cpu);
    }
    aggregator_->Seed(kept);
  }

  // An empty CPU list means "every CPU the kernel lists", which follows
  // hotplug without extra work.
  stats_ = std::make_unique<KernelStatsCollector>(
      config.stats, sysfs_root, config.sampling.all_cpus ? std::vector<int>{} : cpus_);
  for (int cpu : cpus_) {
    counters_.push_back(std::make_unique<collectors::CpuCounters>(sys, *plan_, cpu, 1));
  }
  spdlog::info("counting {} of {} events in {} groups on {} CPUs ({} perf fds), every {}",
               plan_->SupportedCount(), plan_->events.size(), plan_->groups.size(), cpus_.size(),
               open_fds(), config::FormatDuration(config.sampling.interval));
}

void Pipeline::SampleOnce() {
  for (auto& cpu : counters_) {
    cpu->ReadAll([this](const collectors::GroupSample& s) { aggregator_->Ingest(s); });
  }
}

size_t Pipeline::open_fds() const {
  size_t n = 0;
  for (const auto& c : counters_) n += c->open_fds();
  return n;
}

}  // namespace pmu::daemon
