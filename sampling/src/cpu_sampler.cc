#include "pmu/sampling/cpu_sampler.h"

#include <pthread.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <pmu/rseq/abi.h>

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
  for (const auto& [err, n] : other.read_errors) read_errors[err] += n;
  read_duration.Add(other.read_duration);
}

CpuSampler::CpuSampler(std::unique_ptr<collectors::CpuCounters> counters, SampleRing& ring,
                       SamplerOptions options)
    : counters_(std::move(counters)), ring_(ring), options_(options) {
  const size_t n = counters_->groups().size();
  rdpmc_.assign(n, false);
  rdpmc_candidate_.assign(n, false);
  loop_.Reset();
}

CpuSampler::~CpuSampler() { Stop(); }

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
  CPU_SET(static_cast<size_t>(cpu()), &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    spdlog::debug("cpu {}: cannot pin the sampler: {}", cpu(), std::strerror(errno));
  }
  ValidateRdpmc();
  loop_.Run(options_.interval, options_.heartbeat, options_.epoch_ns,
            [this](uint64_t slot) { Tick(slot); });
}

void CpuSampler::ValidateRdpmc() {
#if defined(__x86_64__)
  if (!options_.try_rdpmc) return;
  auto& groups = counters_->groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& group = *groups[g];
    if (!group.MapPages()) continue;
    bool usable = true;
    for (const auto* page : group.pages()) {
      usable = usable && page->cap_user_rdpmc && page->index != 0;
    }
    if (!usable) continue;
    rdpmc_candidate_[g] = true;
    rseq::CounterReadResult fast;
    GroupSample slow;
    if (rseq::ReadCountersOnCpu(cpu(), group.pages(), &fast, options_.pmc) !=
            rseq::ReadStatus::kCommitted ||
        group.Read(&slow) != 0) {
      continue;
    }
    bool agree = true;
    for (uint32_t i = 0; i < slow.count; ++i) agree = agree && Agrees(fast.values[i], slow.values[i]);
    rdpmc_[g] = agree;
    if (!agree) {
      spdlog::warn("cpu {}: rdpmc disagrees with read() for group {}; using read()", cpu(), g);
    }
  }
#endif
}

bool CpuSampler::TryRdpmc(size_t g, GroupSample* s) {
  auto& group = *counters_->groups()[g];
  rseq::CounterReadResult r;
  const rseq::ReadStatus status = rseq::ReadCountersOnCpu(cpu(), group.pages(), &r, options_.pmc);
  if (status == rseq::ReadStatus::kCommitted) {
    s->group = static_cast<uint32_t>(group.group_index());
    s->count = r.count;
    std::copy_n(r.values.begin(), r.count, s->values.begin());
    s->time_enabled = r.time_enabled[0];
    s->time_running = r.time_running[0];
    s->path = ReadPath::kRdpmc;
    return true;
  }
  std::lock_guard lock(stats_mutex_);
  if (status == rseq::ReadStatus::kNeedRead) {
    // The counter left the PMU (index 0) or rdpmc was withdrawn: read() now,
    // look again later.
    rdpmc_[g] = false;
    ++stats_.rdpmc_fallbacks;
  } else if (status == rseq::ReadStatus::kAborted) {
    ++stats_.rdpmc_aborts;
  }
  return false;
}

bool CpuSampler::ReadGroup(size_t g, GroupSample* s) {
  if (rdpmc_[g] && TryRdpmc(g, s)) return true;
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
  if (seq_ % kRdpmcRecheckTicks == 0) {
    for (size_t g = 0; g < rdpmc_.size(); ++g) {
      if (rdpmc_candidate_[g] && !rdpmc_[g]) {
        const auto& pages = counters_->groups()[g]->pages();
        rdpmc_[g] = std::all_of(pages.begin(), pages.end(),
                                [](const auto* p) { return p->cap_user_rdpmc && p->index != 0; });
      }
    }
  }
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
  std::lock_guard lock(stats_mutex_);
  ++stats_.ticks;
  stats_.path = last;
  stats_.read_duration.Observe(seconds);
}

CpuSampler::Stats CpuSampler::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

}  // namespace pmu::sampling
