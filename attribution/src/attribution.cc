#include "pmu/attribution/attribution.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "backend.h"
#include "pmu/collectors/cpu_counters.h"
#include "pmu/collectors/topology.h"

namespace pmu::attribution {

struct CgroupAttribution::Tracked {
  CgroupEntry entry;
  CgroupLabels labels;
  std::vector<RawReading> last;  // the previous reading
  std::vector<CgroupEventTotal> totals;
};

namespace {

// The CPUs of `cpus` online now (all of them when the list is unreadable).
std::vector<int> OnlineOf(const std::vector<int>& cpus) {
  std::vector<int> online;
  try {
    online = collectors::OnlineCpus();
  } catch (const std::exception&) {
    return cpus;
  }
  std::vector<int> out;
  for (int cpu : cpus) {
    if (std::find(online.begin(), online.end(), cpu) != online.end()) out.push_back(cpu);
  }
  return out;
}

// The same event as the kernel sees it (the attrs are normalised by Create).
bool SameEncoding(const perf_event_attr& a, const perf_event_attr& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

}  // namespace

std::string_view ToString(Mode mode) { return mode == Mode::kBpf ? "bpf" : "perf"; }

FdBudget PerfFdBudget(size_t max_cgroups, size_t cpus, size_t events, size_t other_fds) {
  FdBudget budget;
  budget.needed = static_cast<uint64_t>(max_cgroups) * cpus * events;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return budget;
  const uint64_t wanted = budget.needed + other_fds;
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < wanted) {
    rlimit raised = lim;
    raised.rlim_cur =
        lim.rlim_max == RLIM_INFINITY ? wanted : std::min<rlim_t>(lim.rlim_max, wanted);
    if (raised.rlim_cur > lim.rlim_cur && setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  budget.limit = lim.rlim_cur == RLIM_INFINITY ? UINT64_MAX : lim.rlim_cur;
  budget.available = budget.limit > other_fds ? budget.limit - other_fds : 0;
  return budget;
}

std::unique_ptr<CgroupAttribution> CgroupAttribution::Create(const config::Config& config,
                                                             const collectors::EventPlan& plan,
                                                             const AttributionOptions& options) {
  const config::CgroupsConfig& cg = config.cgroups;
  std::string root = cg.root.empty() ? DetectCgroup2Root() : cg.root;
  if (root.empty()) {
    throw std::runtime_error(
        "[cgroups] no cgroup v2 file system is mounted (set [cgroups] root or mount cgroup2)");
  }
  std::vector<std::string> names;
  std::vector<perf_event_attr> attrs;
  for (const auto& event : plan.events) {
    if (!event.supported) continue;
    if (!cg.events.empty() &&
        std::find(cg.events.begin(), cg.events.end(), event.name) == cg.events.end()) {
      continue;
    }
    perf_event_attr attr = event.attr;
    attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
    attr.disabled = 0;
    attr.inherit = 0;
    attr.pinned = 0;
    attr.exclusive = 0;
    names.push_back(event.name);
    attrs.push_back(attr);
  }
  if (attrs.empty()) {
    throw std::runtime_error("[cgroups] none of the events to attribute can be counted here");
  }
  collectors::PerfSyscalls& sys =
      options.sys != nullptr ? *options.sys : collectors::DefaultPerfSyscalls();
  const size_t max = static_cast<size_t>(cg.max);

  CgroupAttribution* previous = options.previous;
  if (previous != nullptr && SameCounters(*previous, cg, root, names, attrs, options.cpus)) {
    std::unique_ptr<CgroupAttribution> attribution(
        new CgroupAttribution(config, previous->mode_, std::move(root), std::move(names),
                              std::move(attrs), options.cpus, previous->backend_));
    attribution->TakeOver(*previous);
    spdlog::info("[cgroups] {} mode: counters and totals kept across the reload",
                 ToString(attribution->mode_));
    attribution->Rescan();
    attribution->Read();
    return attribution;
  }
  const std::vector<int> online = OnlineOf(options.cpus);
  std::unique_ptr<Backend> backend;
  Mode mode = Mode::kPerf;
  std::string bpf_error;
  if (cg.mode != config::CgroupMode::kPerf) {
    backend = MakeBpfBackend(attrs, options.cpus, online, max, sys, &bpf_error);
    if (backend) {
      mode = Mode::kBpf;
    } else if (cg.mode == config::CgroupMode::kBpf) {
      spdlog::error("[cgroups] attribution off: bpf mode unavailable: {}", bpf_error);
      return nullptr;
    } else {
      spdlog::warn("[cgroups] bpf mode unavailable ({}); using perf mode", bpf_error);
    }
  }
  if (!backend) {
    const FdBudget budget = PerfFdBudget(max, options.cpus.size(), attrs.size(), options.other_fds);
    if (budget.needed > budget.available) {
      throw std::runtime_error(
          "[cgroups] perf mode needs up to " + std::to_string(budget.needed) +
          " file descriptors (max " + std::to_string(max) + " cgroups x " +
          std::to_string(options.cpus.size()) + " CPUs x " + std::to_string(attrs.size()) +
          " events) but RLIMIT_NOFILE " + std::to_string(budget.limit) + " leaves " +
          std::to_string(budget.available) + " after " + std::to_string(options.other_fds) +
          " other fds: lower [cgroups] max or events, raise LimitNOFILE=, or use mode \"bpf\"");
    }
    std::string perf_error;
    backend = MakePerfBackend(attrs, options.cpus, online, root, sys, &perf_error);
    if (!backend) {
      spdlog::error("[cgroups] attribution off: neither bpf ({}) nor perf mode ({}) works here",
                    bpf_error.empty() ? "not tried" : bpf_error, perf_error);
      return nullptr;
    }
  }
  std::unique_ptr<CgroupAttribution> attribution(
      new CgroupAttribution(config, mode, std::move(root), std::move(names), std::move(attrs),
                            options.cpus, std::move(backend)));
  spdlog::info("[cgroups] {} mode: {} events per cgroup below {}", ToString(mode),
               attribution->event_names_.size(), attribution->root_);
  attribution->Rescan();
  if (previous != nullptr) attribution->CarryTotals(*previous);
  attribution->Read();
  return attribution;
}

CgroupAttribution::CgroupAttribution(const config::Config& config, Mode mode, std::string root,
                                     std::vector<std::string> event_names,
                                     std::vector<perf_event_attr> attrs, std::vector<int> cpus,
                                     std::shared_ptr<Backend> backend)
    : config_(config.cgroups),
      mode_(mode),
      root_(std::move(root)),
      event_names_(std::move(event_names)),
      attrs_(std::move(attrs)),
      cpus_(std::move(cpus)),
      backend_(std::move(backend)) {}

bool CgroupAttribution::SameCounters(const CgroupAttribution& previous,
                                     const config::CgroupsConfig& config, const std::string& root,
                                     const std::vector<std::string>& names,
                                     const std::vector<perf_event_attr>& attrs,
                                     const std::vector<int>& cpus) {
  if (previous.config_.mode != config.mode || previous.config_.max != config.max ||
      previous.root_ != root || previous.event_names_ != names || previous.cpus_ != cpus ||
      previous.attrs_.size() != attrs.size()) {
    return false;
  }
  for (size_t e = 0; e < attrs.size(); ++e) {
    if (!SameEncoding(previous.attrs_[e], attrs[e])) return false;
  }
  return true;
}

void CgroupAttribution::TakeOver(const CgroupAttribution& previous) {
  shared_ = true;
  tracked_.reserve(previous.tracked_.size());
  for (const auto& t : previous.tracked_) tracked_.push_back(std::make_unique<Tracked>(*t));
  matched_ = previous.matched_;
  overflow_logged_ = previous.overflow_logged_;
  rescans_ = previous.rescans_;
}

// The same cgroup (path and id: one re-created under the path is another)
// and the same event (name and encoding) continue from previous's totals.
void CgroupAttribution::CarryTotals(const CgroupAttribution& previous) {
  std::vector<int> from(event_names_.size(), -1);  // event -> previous's index
  for (size_t e = 0; e < event_names_.size(); ++e) {
    for (size_t p = 0; p < previous.event_names_.size(); ++p) {
      if (previous.event_names_[p] == event_names_[e] &&
          SameEncoding(previous.attrs_[p], attrs_[e])) {
        from[e] = static_cast<int>(p);
      }
    }
  }
  for (const auto& t : tracked_) {
    const auto it =
        std::lower_bound(previous.tracked_.begin(), previous.tracked_.end(), t->entry.path,
                         [](const std::unique_ptr<Tracked>& p, const std::string& path) {
                           return p->entry.path < path;
                         });
    if (it == previous.tracked_.end() || !((*it)->entry == t->entry)) continue;
    for (size_t e = 0; e < from.size(); ++e) {
      if (from[e] >= 0) t->totals[e] = (*it)->totals[static_cast<size_t>(from[e])];
    }
  }
}

CgroupAttribution::~CgroupAttribution() = default;

void CgroupAttribution::Rescan() {
  last_rescan_ns_ = collectors::MonotonicNanos();
  ++rescans_;
  Discovery found =
      Discover(root_, config_.include, config_.exclude, static_cast<size_t>(config_.max));
  matched_ = found.matched;
  if (found.matched > found.counted.size() && !overflow_logged_) {
    overflow_logged_ = true;
    spdlog::warn(
        "[cgroups] {} cgroups match; counting the first {} by path ([cgroups] max), {} "
        "not counted (pmu_cgroup_not_counted)",
        found.matched, found.counted.size(), found.matched - found.counted.size());
  }
  // Both lists sorted by path: keep, remove, add.
  std::vector<std::unique_ptr<Tracked>> next;
  next.reserve(found.counted.size());
  size_t old = 0;
  for (CgroupEntry& entry : found.counted) {
    while (old < tracked_.size() && tracked_[old]->entry.path < entry.path) {
      backend_->Remove(tracked_[old++]->entry.id);
    }
    if (old < tracked_.size() && tracked_[old]->entry == entry) {
      next.push_back(std::move(tracked_[old++]));
      continue;
    }
    if (old < tracked_.size() && tracked_[old]->entry.path == entry.path) {
      backend_->Remove(tracked_[old++]->entry.id);  // re-created: a new cgroup
    }
    std::string error;
    if (!backend_->Add(entry, root_ + (entry.path == "/" ? "" : entry.path), &error)) {
      spdlog::debug("[cgroups] cannot count {}: {}", entry.path, error);  // removed meanwhile
      continue;
    }
    auto tracked = std::make_unique<Tracked>();
    tracked->labels = LabelsFromPath(entry.path);
    tracked->entry = std::move(entry);
    tracked->last.assign(event_names_.size(), RawReading{});
    tracked->totals.assign(event_names_.size(), CgroupEventTotal{});
    next.push_back(std::move(tracked));
  }
  for (; old < tracked_.size(); ++old) backend_->Remove(tracked_[old]->entry.id);
  tracked_ = std::move(next);
}

void CgroupAttribution::Read() {
  backend_->SyncCpus(OnlineOf(cpus_));
  backend_->Refresh();
  auto snapshot = std::make_shared<CgroupSnapshot>();
  snapshot->mode = mode_;
  snapshot->events = event_names_;
  snapshot->matched = matched_;
  snapshot->max = static_cast<size_t>(config_.max);
  snapshot->open_fds = backend_->open_fds();
  snapshot->rescans = rescans_;
  snapshot->cgroups.reserve(tracked_.size());
  std::vector<RawReading> now;
  for (const auto& t : tracked_) {
    backend_->Read(t->entry.id, now);
    for (size_t e = 0; e < now.size() && e < t->totals.size(); ++e) {
      const RawReading& prev = t->last[e];
      if (now[e].counter < prev.counter || now[e].enabled < prev.enabled ||
          now[e].running < prev.running) {
        continue;  // not expected (readings stay cumulative): keep the totals
      }
      const double dc = static_cast<double>(now[e].counter - prev.counter);
      const uint64_t de = now[e].enabled - prev.enabled;
      const uint64_t dr = now[e].running - prev.running;
      CgroupEventTotal& total = t->totals[e];
      // Scaled only where multiplexed, as the per-CPU totals are.
      total.count +=
          dr > 0 && dr < de ? dc * static_cast<double>(de) / static_cast<double>(dr) : dc;
      total.enabled_ns += de;
      total.running_ns += dr;
      t->last[e] = now[e];
    }
    snapshot->cgroups.push_back({t->entry.path, t->entry.id, t->labels, t->totals});
  }
  std::lock_guard lock(latest_mutex_);
  latest_ = std::move(snapshot);
}

void CgroupAttribution::EndRound() {
  if (collectors::MonotonicNanos() - last_rescan_ns_ >= config_.rescan.count()) Rescan();
  Read();
}

std::shared_ptr<const CgroupSnapshot> CgroupAttribution::Latest() const {
  std::lock_guard lock(latest_mutex_);
  return latest_;
}

std::shared_ptr<const metrics::FamilySource> CgroupAttribution::Families() const {
  return CgroupFamilies(Latest());
}

}  // namespace pmu::attribution
