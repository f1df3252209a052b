#include "pmu/sampling/cpu_sampler.h"

#include <pmu/collectors/topology.h>
#include <pmu/rseq/abi.h>
#include <pmu/rseq/read_fault.h>
#include <pthread.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace pmu::sampling {
namespace {

using collectors::GroupSample;
using collectors::ReadPath;

// The start-up agreement between an rdpmc reading and the read(2) that
// follows it: read() may not be below it, and may exceed it only by what the
// counter can count in between (1% or 1e6 events, whichever is larger).
bool Agrees(uint64_t rdpmc, uint64_t read) {
  if (read < rdpmc) return false;
  const uint64_t slack = std::max<uint64_t>(read / 100, 1000000);
  return read - rdpmc <= slack;
}

// The same for times (ns): read() comes after the section, by at most what a
// preempted thread may wait in between.
bool TimesAgree(uint64_t rdpmc, uint64_t read) {
  constexpr uint64_t kSlackNs = 10'000'000;
  return read >= rdpmc && read - rdpmc <= kSlackNs;
}

}  // namespace

const std::shared_ptr<const std::vector<double>>& ReadDurationBuckets() {
  static const auto kBounds = std::make_shared<const std::vector<double>>(
      std::vector<double>{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2});
  return kBounds;
}

void CpuSampler::Stats::Add(const Stats& other) {
  ticks += other.ticks;
  push_retries += other.push_retries;
  push_drops += other.push_drops;
  rdpmc_fallbacks += other.rdpmc_fallbacks;
  rdpmc_aborts += other.rdpmc_aborts;
  rdpmc_faults += other.rdpmc_faults;
  for (const auto& [err, n] : other.read_errors) read_errors[err] += n;
  read_duration.Add(other.read_duration);
}

CpuSampler::CpuSampler(std::shared_ptr<collectors::CpuCounters> counters, SampleRing& ring,
                       SamplerOptions options, uint64_t first_seq)
    : counters_(std::move(counters)),
      ring_(ring),
      options_(options),
      seq_(first_seq > 0 ? first_seq - 1 : 0) {
  const size_t n = counters_->groups().size();
  rdpmc_.assign(n, false);
  rdpmc_recheck_at_.assign(n, 0);
  last_.assign(n, Last{});
  loop_.Reset();
}

CpuSampler::~CpuSampler() { Stop(); }

bool ApplyReadPathOverride(const char* value, SamplerOptions* options) {
  const std::string v = value == nullptr ? "auto" : value;
  if (v == "auto" || v.empty()) return true;
  if (v != "read" && v != "remote") return false;
  options->try_rdpmc = false;
  options->pin_elsewhere = v == "remote";
  return true;
}

void CpuSampler::Start() {
  loop_.Reset();
  thread_ = std::thread([this] { Run(); });
}

void CpuSampler::Stop(bool final_reading) {
  if (!thread_.joinable()) return;
  loop_.RequestStop(final_reading);
  thread_.join();
}

void CpuSampler::Run() {
  rseq::ThreadRegistration registration;  // no-op where glibc registered rseq
  const std::string name = "pmu-cpu" + std::to_string(cpu());
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  cpu_set_t set;
  CPU_ZERO(&set);
  int pin = cpu();
  if (options_.pin_elsewhere) {
    // The next online CPU after this one, wrapping around.
    const std::vector<int> online = collectors::OnlineCpus("/");
    auto it = std::upper_bound(online.begin(), online.end(), cpu());
    if (it == online.end()) it = online.begin();
    if (it != online.end()) pin = *it;
  }
  CPU_SET(static_cast<size_t>(pin), &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    spdlog::debug("cpu {}: cannot pin the sampler: {}", cpu(), std::strerror(errno));
  }
  loop_.Run(options_.interval, options_.heartbeat, options_.epoch_ns,
            [this](uint64_t slot) { Tick(slot); });
}

bool CpuSampler::ValidateRdpmc(size_t g) {
#if defined(__x86_64__)
  auto& group = *counters_->groups()[g];
  if (!group.MapPages()) return false;
  for (const auto* page : group.pages()) {
    // Times the page cannot extrapolate are stale between sched-ins:
    // readings would pair a current count with old times.
    if (!page->cap_user_rdpmc || page->index == 0 || !page->cap_user_time) return false;
  }
  rseq::CounterReadResult fast;
  const rseq::ReadStatus status =
      rseq::ReadCountersOnCpu(cpu(), group.pages(), &fast, options_.pmc);
  if (status == rseq::ReadStatus::kFaulted) NoteFault();
  if (status != rseq::ReadStatus::kCommitted || !fast.times_current) return false;
  GroupSample slow;
  if (group.Read(&slow) != 0) return false;
  Remember(g, slow);
  for (uint32_t i = 0; i < slow.count; ++i) {
    if (!Agrees(fast.values[i], slow.values[i]) ||
        !TimesAgree(fast.time_enabled[i], slow.time_enabled) ||
        !TimesAgree(fast.time_running[i], slow.time_running)) {
      if (!rdpmc_disagreement_logged_) {
        spdlog::warn(
            "cpu {}: rdpmc disagrees with read() for group {} (event {}: {} vs {}); using "
            "read(), checked again every {} ticks",
            cpu(), g, i, fast.values[i], slow.values[i], kRdpmcRecheckTicks);
        rdpmc_disagreement_logged_ = true;
      }
      return false;
    }
  }
  return true;
#else
  (void)g;
  return false;
#endif
}

void CpuSampler::NoteFault() {
  std::lock_guard lock(stats_mutex_);
  ++stats_.rdpmc_faults;
  if (stats_.rdpmc_faults == 1) {
    spdlog::warn(
        "cpu {}: rdpmc faulted (user rdpmc switched off at run time, e.g. "
        "/sys/bus/event_source/devices/cpu/rdpmc = 0); reading with read() instead",
        cpu());
  }
}

void CpuSampler::UpdateReadPaths() {
  if (!options_.try_rdpmc || rseq::CurrentCpu() != cpu()) return;
  // The instruction faults where user rdpmc is off: only with the handler
  // that turns the fault into a fallback.
  if (options_.pmc.fake_counters == nullptr && !rseq::ReadFaultHandlerInstalled()) return;
  for (size_t g = 0; g < rdpmc_.size(); ++g) {
    if (rdpmc_[g] || seq_ < rdpmc_recheck_at_[g]) continue;
    // Every switch to rdpmc is validated against read(), values and times.
    rdpmc_[g] = ValidateRdpmc(g);
    rdpmc_recheck_at_[g] = seq_ + kRdpmcRecheckTicks;
  }
}

bool CpuSampler::TryRdpmc(size_t g, GroupSample* s) {
  auto& group = *counters_->groups()[g];
  rseq::CounterReadResult r;
  const rseq::ReadStatus status = rseq::ReadCountersOnCpu(cpu(), group.pages(), &r, options_.pmc);
  if (status == rseq::ReadStatus::kCommitted && r.times_current && Plausible(g, r)) {
    s->group = static_cast<uint32_t>(group.group_index());
    s->count = r.count;
    std::copy_n(r.values.begin(), r.count, s->values.begin());
    s->time_enabled = r.time_enabled[0];
    s->time_running = r.time_running[0];
    s->path = ReadPath::kRdpmc;
    return true;
  }
  if (status == rseq::ReadStatus::kAborted || status == rseq::ReadStatus::kWrongCpu) {
    std::lock_guard lock(stats_mutex_);
    stats_.rdpmc_aborts += status == rseq::ReadStatus::kAborted ? 1 : 0;
    return false;  // read() this time, rdpmc again next tick
  }
  // The counter left the PMU (index 0), rdpmc was withdrawn or faulted, the
  // times stopped being current, or the value cannot be a count: read() until
  // validated again.
  if (status == rseq::ReadStatus::kFaulted) NoteFault();
  rdpmc_[g] = false;
  rdpmc_recheck_at_[g] = seq_ + kRdpmcRecheckTicks;
  std::lock_guard lock(stats_mutex_);
  ++stats_.rdpmc_fallbacks;
  return false;
}

void CpuSampler::Remember(size_t g, const GroupSample& s) {
  Last& last = last_[g];
  last.valid = true;
  last.ns = collectors::MonotonicNanos();
  last.count = s.count;
  std::copy_n(s.values.begin(), s.count, last.values.begin());
}

// A committed rdpmc reading that no counter can have produced since the last
// reading: lower than it, or higher by more than kMaxEventsPerSecond allows
// for the time between them (a counter whose user rdpmc the kernel disabled
// reads 0, and the value becomes the page offset, about 2^47).
bool CpuSampler::Plausible(size_t g, const rseq::CounterReadResult& r) {
  const Last& last = last_[g];
  if (!last.valid || last.count != r.count) return true;
  const int64_t elapsed_ns = std::max<int64_t>(collectors::MonotonicNanos() - last.ns, 0);
  const double bound = kMaxEventsPerSecond * static_cast<double>(elapsed_ns) * 1e-9 + 1e6;
  for (uint32_t i = 0; i < r.count; ++i) {
    if (r.values[i] < last.values[i] || static_cast<double>(r.values[i] - last.values[i]) > bound) {
      if (!rdpmc_implausible_logged_) {
        spdlog::warn(
            "cpu {}: rdpmc read {} for group {} event {} after {} {} ms before: not a count "
            "(user rdpmc disabled for this counter?); using read(), checked again every {} ticks",
            cpu(), r.values[i], g, i, last.values[i], elapsed_ns / 1'000'000, kRdpmcRecheckTicks);
        rdpmc_implausible_logged_ = true;
      }
      return false;
    }
  }
  return true;
}

bool CpuSampler::ReadGroup(size_t g, GroupSample* s) {
  if (rdpmc_[g] && TryRdpmc(g, s)) {
    Remember(g, *s);
    return true;
  }
  auto& group = *counters_->groups()[g];
  const int before = rseq::CurrentCpu();
  const int rc = group.Read(s);
  const int after = rseq::CurrentCpu();
  if (rc != 0) {
    std::lock_guard lock(stats_mutex_);
    ++stats_.read_errors[-rc];
    return false;
  }
  s->path = (before == cpu() && after == cpu()) ? ReadPath::kLocalRead : ReadPath::kRemoteRead;
  Remember(g, *s);
  return true;
}

void CpuSampler::Push(GroupSample& s) {
  for (int attempt = 0; attempt < kPushAttempts; ++attempt) {
    s.read_cpu = rseq::CurrentCpu();
    const rseq::PushResult r = ring_.TryPushOnCpu(s.read_cpu, s);
    if (r.status == rseq::PushStatus::kPushed || r.status == rseq::PushStatus::kDropped) return;
    // kWrongCpu: migrated between measuring the CPU and committing;
    // kContended: the consumer holds the ring. Either way: again.
    std::lock_guard lock(stats_mutex_);
    ++stats_.push_retries;
  }
  std::lock_guard lock(stats_mutex_);
  ++stats_.push_drops;
}

void CpuSampler::Tick(uint64_t slot) {
  ++seq_;
  UpdateReadPaths();
  const int64_t start = collectors::MonotonicNanos();
  ReadPath last = ReadPath::kRemoteRead;
  for (size_t g = 0; g < counters_->groups().size(); ++g) {
    GroupSample s;
    if (!ReadGroup(g, &s)) continue;
    s.cpu = cpu();
    s.generation = counters_->generation();
    s.timestamp_ns = collectors::MonotonicNanos();
    s.tick = slot;
    s.seq = seq_;
    s.groups_in_tick = static_cast<uint32_t>(counters_->groups().size());
    last = s.path;
    Push(s);
  }
  const double seconds = static_cast<double>(collectors::MonotonicNanos() - start) * 1e-9;
  {
    std::lock_guard lock(stats_mutex_);
    ++stats_.ticks;
    stats_.path = last;
    stats_.read_duration.Observe(seconds);
  }
  if (options_.after_tick) options_.after_tick(cpu(), slot);
}

CpuSampler::Stats CpuSampler::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

}  // namespace pmu::sampling
