#include "pmu/collectors/cpu_counters.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>

namespace pmu::collectors {

int64_t MonotonicNanos() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

CpuCounters::CpuCounters(PerfSyscalls& sys, const EventPlan& plan, int cpu, uint32_t generation,
                         bool quiet_not_ready, const std::vector<std::vector<int>>* sites)
    : cpu_(cpu), generation_(generation) {
  const std::vector<std::vector<int>> own =
      sites == nullptr ? plan.GroupSites() : std::vector<std::vector<int>>{};
  const std::vector<std::vector<int>>& where = sites == nullptr ? own : *sites;
  for (size_t g = 0; g < plan.groups.size(); ++g) {
    if (!EventPlan::GroupOnCpu(where, g, cpu)) continue;
    EventGroup::OpenError error;
    auto group = EventGroup::Open(sys, plan, g, cpu, &error);
    if (group == nullptr && quiet_not_ready && error.err == ENODEV) {
      ++not_ready_groups_;
      continue;
    }
    if (group == nullptr) {
      std::string events;
      for (size_t ev : plan.groups[g].members) {
        events += (events.empty() ? "" : ", ") + plan.events[ev].name;
      }
      spdlog::error("cpu {}: group '{}' ({}) cannot be opened: {}{}", cpu, plan.groups[g].name,
                    events, error.message,
                    error.err == EINVAL && plan.groups[g].members.size() > 1
                        ? " (the PMU cannot schedule these events together: split the group)"
                        : "");
      continue;
    }
    groups_.push_back(std::move(group));
  }
}

size_t CpuCounters::open_fds() const {
  size_t n = 0;
  for (const auto& g : groups_) n += g->fds().size();
  return n;
}

size_t CpuCounters::ReadAll(const std::function<void(const GroupSample&)>& sink) {
  size_t failures = 0;
  for (auto& group : groups_) {
    GroupSample sample;
    int rc = group->Read(&sample);
    if (rc != 0) {
      ++failures;
      spdlog::debug("cpu {}: read of group {} failed: {}", cpu_, group->group_index(),
                    std::strerror(-rc));
      continue;
    }
    sample.cpu = cpu_;
    sample.generation = generation_;
    sample.timestamp_ns = MonotonicNanos();
    sample.path = ReadPath::kRemoteRead;
    sink(sample);
  }
  return failures;
}

}  // namespace pmu::collectors
