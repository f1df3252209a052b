#include "pmu/sampling/pipeline.h"

#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <tuple>

#include "pmu/collectors/cpu_counters.h"
#include "pmu/collectors/event_source.h"
#include "pmu/collectors/kernel_stats.h"
#include "pmu/collectors/topology.h"

namespace pmu::sampling {
namespace {

bool Contains(const std::vector<int>& sorted, int cpu) {
  return std::binary_search(sorted.begin(), sorted.end(), cpu);
}

// Two plans that open exactly the same fds in the same groups: a reload
// between them can keep the fds open.
bool SameFds(const collectors::EventPlan& a, const collectors::EventPlan& b) {
  if (a.events.size() != b.events.size() || a.groups.size() != b.groups.size()) return false;
  for (size_t g = 0; g < a.groups.size(); ++g) {
    if (a.groups[g].members != b.groups[g].members) return false;
  }
  for (size_t e = 0; e < a.events.size(); ++e) {
    const auto& x = a.events[e];
    const auto& y = b.events[e];
    if (x.name != y.name || x.supported != y.supported || x.group != y.group ||
        std::memcmp(&x.attr, &y.attr, sizeof x.attr) != 0) {
      return false;
    }
  }
  return true;
}

// The leading "cpu" lines of /proc/stat: all the observers read (the intr
// and softirq lines after them are long and of no use to them).
std::string_view CpuLines(std::string_view text) {
  size_t end = 0;
  while (end < text.size() && text.compare(end, 3, "cpu") == 0) {
    const size_t newline = text.find('\n', end);
    end = newline == std::string_view::npos ? text.size() : newline + 1;
  }
  return text.substr(0, end);
}

}  // namespace

Pipeline::Pipeline(const config::Config& config, collectors::PerfSyscalls& sys,
                   PipelineOptions options, Pipeline* previous)
    : config_(config), sys_(sys), options_(std::move(options)) {
  options_.sampler.interval = config.sampling.interval;
  options_.sampler.heartbeat = options_.heartbeat;
  options_.sampler.epoch_ns = collectors::MonotonicNanos();
  const std::vector<int> possible = collectors::PossibleCpus(options_.root);
  selectable_ = config.sampling.all_cpus ? possible : config.sampling.cpus;
  const std::vector<int> cpus = WantedCpus();
  for (int cpu : config.sampling.cpus) {
    if (!Contains(cpus, cpu)) {
      spdlog::warn("cpu {} is configured but offline; sampled when it comes online", cpu);
    }
  }
  if (cpus.empty()) throw std::runtime_error("none of the configured CPUs is online");

  const collectors::EventResolver resolver(options_.root);
  plan_ = std::make_shared<collectors::EventPlan>(
      collectors::BuildEventPlan(config.events, sys, cpus.front(), resolver, options_.root));
  sites_ = plan_->GroupSites();
  if (plan_->SupportedCount() == 0) {
    spdlog::warn(
        "none of the {} configured events can be counted on this host; only "
        "pmu_event_supported is exported",
        plan_->events.size());
  }

  // Every selectable CPU may come online: make room for all of their fds.
  collectors::EnsureFdLimit(selectable_.size(), plan_->SupportedCount());

  int slots = 1;
  for (int cpu : possible) slots = std::max(slots, cpu + 1);
  for (int cpu : selectable_) slots = std::max(slots, cpu + 1);
  aggregator_ = std::make_unique<Aggregator>(plan_, slots, config.sampling.min_running_ratio);

  // An empty CPU list means "every CPU the kernel lists", which follows
  // hotplug without extra work.
  stats_ = std::make_unique<KernelStatsReader>(
      config.stats, options_.root, config.sampling.all_cpus ? std::vector<int>{} : selectable_);

  if (previous != nullptr) {
    // Only CPUs this configuration selects carry over; a CPU dropped from
    // the configuration disappears like a removed event.
    if (const auto last = previous->latest()) {
      AggregateSnapshot kept{last->plan, {}};
      for (const auto& cpu : last->counters) {
        if (Contains(selectable_, cpu.cpu)) kept.cpus.push_back(cpu);
      }
      aggregator_->Seed(kept);
      base_ = last->pipeline;
      for (const auto& cpu : last->pipeline.cpus) {
        if (Contains(selectable_, cpu.cpu)) retired_[cpu.cpu] = cpu.sampler;
      }
      base_.cpus.clear();
    }
    stats_->TakeStateFrom(*previous->stats_);
  }

  // The aggregator drains every kDrainTicks intervals at least: the rings
  // hold twice that many ticks of every group.
  const auto interval =
      std::chrono::duration_cast<std::chrono::nanoseconds>(config.sampling.interval);
  drain_period_ = std::clamp<std::chrono::nanoseconds>(interval * static_cast<int64_t>(kDrainTicks),
                                                       interval, kMaxDrainPeriod);
  const auto drain_ticks = static_cast<size_t>(drain_period_ / interval) + 1;
  const size_t per_tick = std::max<size_t>(plan_->groups.size(), 1);
  ring_ = std::make_unique<SampleRing>(
      slots, std::bit_ceil(std::max<size_t>(64, per_tick * drain_ticks * 2)));
  proc_stat_file_ = std::make_unique<HeldFile>(collectors::UnderRoot(options_.root, "/proc/stat"));
  options_.sampler.after_tick = [this](int cpu, uint64_t slot) { TapProcStat(cpu, slot); };
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    throw std::runtime_error(std::string("eventfd for the aggregator: ") + std::strerror(errno));
  }

  // A reload whose plan opens the same fds keeps them open: the stopped
  // samplers of `previous` share their counters with the new ones, which
  // continue their sequence, and the aggregator continues from their last
  // readings. Nothing that happened between the two configurations is lost.
  // (Shared, not moved: if this reload fails, `previous` runs on with them.)
  size_t kept = 0;
  // (Same PMU CPUs too: a cpumask that moved means other fds.)
  const bool same_fds =
      previous != nullptr && SameFds(*previous->plan_, *plan_) && previous->sites_ == sites_;
  if (previous != nullptr) generation_ = previous->generation_;
  for (int cpu : cpus) {
    std::shared_ptr<collectors::CpuCounters> counters;
    uint64_t first_seq = 0;
    if (same_fds) {
      std::lock_guard lock(previous->mutex_);
      if (auto it = previous->samplers_.find(cpu); it != previous->samplers_.end()) {
        counters = it->second->shared_counters();
        first_seq = it->second->next_seq();
      }
    }
    if (counters != nullptr) {
      aggregator_->ContinueFrom(*previous->aggregator_, cpu);
      kept += counters->open_fds();
    }
    StartCpu(cpu, /*start_thread=*/false, std::move(counters), first_seq);
  }
  spdlog::info("counting {} of {} events in {} groups on {} CPUs ({} perf fds{}), every {}",
               plan_->SupportedCount(), plan_->events.size(), plan_->groups.size(), cpus.size(),
               open_fds(), kept > 0 ? ", kept open across the reload" : "",
               config::FormatDuration(config.sampling.interval));
}

Pipeline::~Pipeline() {
  Stop();
  {
    std::lock_guard lock(mutex_);
    samplers_.clear();  // closes every perf fd
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

void Pipeline::AddObserver(RoundObserver* observer) {
  observers_.push_back(observer);
  aggregator_->AddObserver(observer);
  if (!observer->NeedsProcStat()) return;
  // Every so many ticks: the shortest period any observer asks for.
  const std::chrono::nanoseconds interval = options_.sampler.interval;
  const auto every = static_cast<uint64_t>(std::max<int64_t>(
      1, (observer->ProcStatPeriod() + interval - std::chrono::nanoseconds(1)) / interval));
  proc_stat_every_ = want_proc_stat_ ? std::min(proc_stat_every_, every) : every;
  want_proc_stat_ = true;
}

void Pipeline::TapProcStat(int cpu, uint64_t slot) {
  if (!want_proc_stat_ || !tapping_.load(std::memory_order_relaxed) ||
      cpu != proc_stat_cpu_.load(std::memory_order_relaxed) || slot % proc_stat_every_ != 0) {
    return;
  }
  const int64_t now = collectors::MonotonicNanos();
  std::string_view text;
  int error = 0;
  std::lock_guard lock(proc_stat_mutex_);
  TakenProcStat taken;
  taken.read = proc_stat_file_->Read(&text, &error);
  if (taken.read) taken.cpu_lines = CpuLines(text);
  taken.taken_ns = now;
  if (proc_stat_queue_.size() >= kMaxQueuedProcStat) proc_stat_queue_.pop_front();
  proc_stat_queue_.push_back(std::move(taken));
}

std::vector<int> Pipeline::WantedCpus() const {
  std::vector<int> wanted;
  for (int cpu : collectors::OnlineCpus(options_.root)) {
    if (Contains(selectable_, cpu)) wanted.push_back(cpu);
  }
  return wanted;
}

uint64_t Pipeline::CurrentSlot() const {
  return PeriodicLoop::SlotAt(collectors::MonotonicNanos(), options_.sampler.epoch_ns,
                              options_.sampler.interval);
}

bool Pipeline::StartCpu(int cpu, bool start_thread, std::shared_ptr<collectors::CpuCounters> kept,
                        uint64_t first_seq, bool just_online) {
  std::shared_ptr<collectors::CpuCounters> counters = std::move(kept);
  if (counters == nullptr) {
    // A CPU that has only just come online may refuse perf events for a
    // moment (ENODEV until perf's own hotplug step has run): try again next
    // round rather than losing its groups for this generation.
    const bool retry = just_online && not_ready_rounds_[cpu] < kNotReadyRounds;
    auto fresh = std::make_shared<collectors::CpuCounters>(sys_, *plan_, cpu, generation_[cpu] + 1,
                                                           retry, &sites_);
    if (retry && fresh->not_ready_groups() > 0) {
      ++not_ready_rounds_[cpu];
      return false;
    }
    not_ready_rounds_.erase(cpu);
    counters = std::move(fresh);
    ++generation_[cpu];
  }
  auto sampler =
      std::make_unique<CpuSampler>(std::move(counters), *ring_, options_.sampler, first_seq);
  aggregator_->SetCpuActive(cpu, true, std::max(CurrentSlot(), manual_slot_));
  if (start_thread) sampler->Start();
  std::lock_guard lock(mutex_);
  samplers_[cpu] = std::move(sampler);
  proc_stat_cpu_ = samplers_.begin()->first;
  return true;
}

void Pipeline::StopCpu(int cpu) {
  std::unique_ptr<CpuSampler> sampler;
  {
    std::lock_guard lock(mutex_);
    auto it = samplers_.find(cpu);
    if (it == samplers_.end()) return;
    sampler = std::move(it->second);
    samplers_.erase(it);
    proc_stat_cpu_ = samplers_.empty() ? -1 : samplers_.begin()->first;
  }
  // One last reading: the fds of an offline CPU still hold its final counts.
  if (running_) {
    sampler->Stop(/*final_reading=*/true);
  } else {
    manual_slot_ = std::max(manual_slot_ + 1, CurrentSlot());
    sampler->Tick(manual_slot_);
  }
  Drain();  // its last samples, before its fds close
  aggregator_->SetCpuActive(cpu, false, 0);
  std::lock_guard lock(mutex_);
  retired_[cpu].Add(sampler->stats());
}

void Pipeline::SampleNow() {
  manual_slot_ = std::max(manual_slot_ + 1, CurrentSlot());
  {
    std::lock_guard lock(mutex_);
    for (auto& [cpu, sampler] : samplers_) sampler->Tick(manual_slot_);
  }
  Round(/*check_hotplug=*/true);
}

void Pipeline::Start() {
  if (running_) return;
  {
    std::lock_guard lock(mutex_);
    for (auto& [cpu, sampler] : samplers_) sampler->Start();
  }
  running_ = true;
  stop_ = false;
  tapping_ = true;
  if (!uevents_) {
    uevents_ = std::make_unique<CpuUevents>();
    if (uevents_->fd() < 0) {
      spdlog::info("CPU hotplug: no kernel uevents ({}); the online CPU list is read every {} s",
                   uevents_->error(), kHotplugSafetyPoll.count());
    }
  }
  last_hotplug_check_ns_ = collectors::MonotonicNanos();
  aggregator_due_ns_ = last_hotplug_check_ns_ + drain_period_.count() + options_.heartbeat.count();
  aggregator_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "pmu-aggregator");
    AggregatorMain();
  });
  std::lock_guard lock(mutex_);
  aggregating_ = true;
}

void Pipeline::Wake() {
  const uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0 && errno != EAGAIN) {
    spdlog::debug("cannot wake the aggregator: {}", std::strerror(errno));
  }
}

void Pipeline::AggregatorMain() {
  const int64_t period = drain_period_.count();
  const int64_t slack = options_.heartbeat.count();
  int64_t next = collectors::MonotonicNanos() + period;
  while (!stop_.load()) {
    const int64_t now = collectors::MonotonicNanos();
    aggregator_due_ns_ = next + slack;
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {uevents_->fd(), POLLIN, 0}};
    const int timeout_ms =
        static_cast<int>(std::max<int64_t>(0, (next - now + 999'999) / 1'000'000));
    const int n = poll(fds, uevents_->fd() >= 0 ? 2 : 1, timeout_ms);
    if (stop_.load()) break;
    aggregator_due_ns_ = collectors::MonotonicNanos() + slack;  // inside a round
    if (n > 0 && (fds[0].revents & POLLIN)) {
      uint64_t count = 0;
      (void)!read(wake_fd_, &count, sizeof(count));
    }
    bool hotplug = n > 0 && (fds[1].revents & POLLIN) && uevents_->DrainCpuEvents();
    // A CPU that came online but refused perf events yet is retried every
    // interval (StartCpu), not every drain period.
    hotplug = hotplug || !not_ready_rounds_.empty();
    const int64_t woke = collectors::MonotonicNanos();
    hotplug = hotplug ||
              woke - last_hotplug_check_ns_ >= std::chrono::nanoseconds(kHotplugSafetyPoll).count();
    const bool wanted = round_wanted_.exchange(false);
    if (woke < next && !wanted && !hotplug) continue;  // a uevent of no interest
    Round(hotplug);
    // At least every period since the last round; every interval while a
    // CPU waits to be retried.
    next = collectors::MonotonicNanos() +
           (not_ready_rounds_.empty() ? period : options_.sampler.interval.count());
  }
}

void Pipeline::Stop(bool final_reading) {
  stop_ = true;
  {
    std::lock_guard lock(mutex_);
    aggregating_ = false;
  }
  round_cv_.notify_all();
  if (aggregator_thread_.joinable()) {
    Wake();
    aggregator_thread_.join();
  }
  const bool was_running = running_;
  {
    std::lock_guard lock(mutex_);
    for (auto& [cpu, sampler] : samplers_) sampler->Stop(final_reading && was_running);
  }
  tapping_ = false;
  running_ = false;
  if (final_reading && was_running) Round(/*check_hotplug=*/false);
}

void Pipeline::Drain() {
  drained_.clear();
  ring_->DrainAll([this](int ring_cpu, const collectors::GroupSample& s) {
    if (s.read_cpu != ring_cpu) ++misfiled_;
    drained_.push_back(s);
  });
  // A CPU's readings may sit in several rings (its sampler migrated, or
  // another thread ticked it): restore their order.
  std::sort(drained_.begin(), drained_.end(),
            [](const collectors::GroupSample& a, const collectors::GroupSample& b) {
              return std::tie(a.cpu, a.generation, a.seq, a.group) <
                     std::tie(b.cpu, b.generation, b.seq, b.group);
            });
  for (const collectors::GroupSample& s : drained_) aggregator_->Ingest(s);
  aggregator_->EndRound();
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
  const std::vector<int> running = cpus();
  bool changed = false;
  for (int cpu : running) {
    if (Contains(wanted, cpu)) continue;
    StopCpu(cpu);
    ++hotplug_events_;
    changed = true;
    spdlog::info("cpu {} went offline: sampler stopped, perf fds closed; its totals are kept", cpu);
  }
  for (int cpu : wanted) {
    if (Contains(running, cpu)) continue;
    if (!StartCpu(cpu, running_, nullptr, 0, /*just_online=*/true)) continue;
    ++hotplug_events_;
    changed = true;
    spdlog::info("cpu {} came online: perf fds reopened (generation {}), sampling resumed", cpu,
                 generation_[cpu]);
  }
  if (changed) FollowPmuCpus();
  return changed;
}

void Pipeline::FollowPmuCpus() {
  std::vector<std::vector<int>> now = plan_->ReadGroupSites();
  if (now == sites_) return;
  const std::vector<std::vector<int>> before = std::move(sites_);
  sites_ = std::move(now);
  for (int cpu : cpus()) {
    bool moved = false;
    for (size_t g = 0; g < sites_.size(); ++g) {
      moved = moved || collectors::EventPlan::GroupOnCpu(before, g, cpu) !=
                           collectors::EventPlan::GroupOnCpu(sites_, g, cpu);
    }
    if (!moved) continue;
    // The kernel moved a unit event (uncore cpumask) to or from this CPU:
    // reopen it with the new set of groups; its totals continue.
    StopCpu(cpu);
    StartCpu(cpu, running_);
    spdlog::info("cpu {}: PMU cpumask changed; perf fds reopened (generation {})", cpu,
                 generation_[cpu]);
  }
}

void Pipeline::Round(bool check_hotplug) {
  if (check_hotplug) {
    last_hotplug_check_ns_ = collectors::MonotonicNanos();
    CheckHotplug();
  }
  Drain();
  // /proc/stat for the observers: the readings the tap took, in order; a
  // synchronous round (no sampler threads, no tap) hands them the parse of
  // the [stats] read, one read for every consumer.
  std::deque<TakenProcStat> taken;
  if (want_proc_stat_) {
    std::lock_guard lock(proc_stat_mutex_);
    taken.swap(proc_stat_queue_);
  }
  std::vector<std::pair<collectors::ProcStat, int64_t>> proc_stats;
  proc_stats.reserve(taken.size() + 1);
  for (const TakenProcStat& t : taken) {
    proc_stats.emplace_back(
        t.read ? collectors::ParseProcStatText(t.cpu_lines, proc_stat_file_->path())
               : collectors::ProcStat{},
        t.taken_ns);
  }
  const bool synchronous = want_proc_stat_ && !tapping_.load();
  std::optional<collectors::ProcStat> parse;
  auto snapshot = std::make_shared<Snapshot>();
  stats_->SetOnlineCpus(cpus());  // what hotplug last saw: no sysfs read here
  snapshot->kernel = stats_->Read(synchronous, synchronous ? &parse : nullptr);
  if (parse) proc_stats.emplace_back(std::move(*parse), collectors::MonotonicNanos());
  const int64_t now = collectors::MonotonicNanos();
  for (RoundObserver* o : observers_) {
    if (o->NeedsProcStat()) {
      for (const auto& [stat, taken_ns] : proc_stats) o->OnProcStat(stat, taken_ns);
    }
    o->EndRound();
  }
  AggregateSnapshot counters = aggregator_->TakeSnapshot();
  snapshot->taken_ns = now;
  snapshot->plan = std::move(counters.plan);
  snapshot->counters = std::move(counters.cpus);
  snapshot->pipeline = CollectStats();
  std::shared_ptr<const Snapshot> published;
  {
    std::lock_guard lock(mutex_);
    snapshot->round = ++round_;
    published = std::move(snapshot);
    latest_ = published;
  }
  if (publisher_) publisher_(std::move(published));
  {
    // Fresh() returns once the publisher has the snapshot too.
    std::lock_guard lock(mutex_);
    ++published_;
  }
  round_cv_.notify_all();
}

uint64_t Pipeline::rounds() const {
  std::lock_guard lock(mutex_);
  return round_;
}

std::shared_ptr<const Snapshot> Pipeline::Fresh(std::chrono::nanoseconds wait) {
  const auto max_age =
      std::chrono::duration_cast<std::chrono::nanoseconds>(config_.sampling.interval);
  std::unique_lock lock(mutex_);
  const int64_t now = collectors::MonotonicNanos();
  if (!aggregating_ || (latest_ && now - latest_->taken_ns < max_age.count())) {
    return latest_;
  }
  const uint64_t before = published_;
  round_wanted_ = true;
  Wake();
  round_cv_.wait_for(lock, wait, [&] { return published_ != before || !aggregating_; });
  return latest_;
}

std::shared_ptr<const Snapshot> Pipeline::latest() const {
  std::lock_guard lock(mutex_);
  return latest_;
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
  // The aggregator waits for long stretches: it is late only once its next
  // wake-up (or the end of the round it is in) is overdue.
  oldest = std::min(oldest, aggregator_due_ns_.load());
  for (const auto& [cpu, sampler] : samplers_) oldest = std::min(oldest, sampler->heartbeat_ns());
  return oldest;
}

PipelineStats Pipeline::CollectStats() const {
  PipelineStats out;
  out.ring_drops = base_.ring_drops + ring_->drops();
  out.ring_aborts = base_.ring_aborts + ring_->aborts();
  out.ring_fallbacks = base_.ring_fallbacks + ring_->fallbacks();
  out.misfiled = base_.misfiled + misfiled_;
  out.hotplug_events = base_.hotplug_events + hotplug_events_;
  std::lock_guard lock(mutex_);
  for (int cpu : selectable_) {
    PipelineStats::Cpu c;
    c.cpu = cpu;
    if (auto retired = retired_.find(cpu); retired != retired_.end()) c.sampler = retired->second;
    auto it = samplers_.find(cpu);
    c.online = it != samplers_.end();
    if (c.online) {
      const CpuSampler::Stats live = it->second->stats();
      c.sampler.Add(live);
      c.sampler.path = live.path;
    }
    out.cpus.push_back(std::move(c));
  }
  return out;
}

}  // namespace pmu::sampling
