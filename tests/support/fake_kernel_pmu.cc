#include "fake_kernel_pmu.h"

#include <sys/mman.h>
#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "pmu/rseq/counter_read.h"

namespace pmu::testing {
namespace {

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

uint64_t Cycles() {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return 0;
#endif
}

constexpr uint16_t kTimeShift = 20;

}  // namespace

FakeKernelPmu::FakeKernelPmu(Options options) : options_(options) {
  void* mem = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::runtime_error("FakeKernelPmu: mmap failed");
  counters_ = static_cast<volatile uint64_t*>(mem);
  if (options_.cap_user_time) {
    // ns per cycle, measured against CLOCK_MONOTONIC.
    const int64_t t0 = NowNs();
    const uint64_t c0 = Cycles();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const int64_t t1 = NowNs();
    const uint64_t c1 = Cycles();
    const double ns_per_cycle = static_cast<double>(t1 - t0) / static_cast<double>(c1 - c0);
    time_shift_ = kTimeShift;
    time_mult_ = static_cast<uint32_t>(ns_per_cycle * static_cast<double>(1u << kTimeShift) + 0.5);
  }
}

FakeKernelPmu::~FakeKernelPmu() {
  for (auto& [fd, e] : events_) {
    if (e.page != nullptr) munmap(e.page, 4096);
  }
  munmap(const_cast<uint64_t*>(counters_), 4096);
}

uint64_t FakeKernelPmu::Mask() const {
  return options_.pmc_width >= 64 ? ~uint64_t{0} : (uint64_t{1} << options_.pmc_width) - 1;
}

int64_t FakeKernelPmu::SignExtend(uint64_t raw) const {
  const int shift = 64 - options_.pmc_width;
  return static_cast<int64_t>(raw << shift) >> shift;
}

void FakeKernelPmu::Program(Event& e) {
  // x86 counting events: the counter starts at -left, left = 2^(w-1) - 1.
  const uint64_t left = (uint64_t{1} << (options_.pmc_width - 1)) - 1;
  e.raw = (Mask() + 1 - left) & Mask();
  counters_[e.slot] = rdpmc_per_counter_disabled_ ? 0 : e.raw;
}

bool FakeKernelPmu::Enabled(const Event& e) const {
  if (!e.enabled) return false;
  const auto leader = events_.find(e.leader);
  return leader == events_.end() || leader->second.enabled;
}

void FakeKernelPmu::Advance(Event& e, int64_t now) {
  if (!e.frozen && Enabled(e)) {
    e.enabled_ns += now - e.since_ns;
    if (e.in) e.running_ns += now - e.since_ns;
  }
  e.since_ns = now;
}

void FakeKernelPmu::UpdatePage(Event& e, int64_t now) {
  if (e.page == nullptr) return;
  Advance(e, now);
  perf_event_mmap_page* p = e.page;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  p->lock = p->lock + 1;  // odd: being written
  std::atomic_thread_fence(std::memory_order_seq_cst);
  p->index = e.in && !e.frozen && Enabled(e) ? static_cast<uint32_t>(e.slot + 1) : 0;
  p->offset = static_cast<int64_t>(e.count - static_cast<uint64_t>(SignExtend(e.raw)));
  p->time_enabled = static_cast<uint64_t>(e.enabled_ns);
  p->time_running = static_cast<uint64_t>(e.running_ns);
  p->cap_user_rdpmc = options_.cap_user_rdpmc ? 1 : 0;
  p->cap_user_time = options_.cap_user_time ? 1 : 0;
  p->pmc_width = options_.pmc_width;
  if (options_.cap_user_time) {
    p->time_mult = time_mult_;
    p->time_shift = time_shift_;
    // The kernel's time_offset makes time_offset + cyc2ns(tsc) the time
    // since this update.
    const uint64_t ns = rseq::TscToPerfTimeDelta(Cycles(), 0, time_mult_, time_shift_);
    p->time_offset = static_cast<uint64_t>(-static_cast<int64_t>(ns));
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  p->lock = p->lock + 1;
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

int FakeKernelPmu::Open(perf_event_attr* attr, pid_t pid, int cpu, int group_fd, unsigned long) {
  std::lock_guard lock(mutex_);
  if (pid != -1 || cpu < 0) return -EINVAL;
  if (offline_[cpu]) return -ENODEV;
  size_t slot = 0;
  while (slot < kCounters && slot_used_[slot]) ++slot;
  if (slot == kCounters) return -EBUSY;
  slot_used_[slot] = true;
  const int fd = next_fd_++;
  Event e;
  e.cpu = cpu;
  e.config = attr->config;
  e.leader = group_fd < 0 ? fd : group_fd;
  e.slot = slot;
  e.since_ns = NowNs();
  e.enabled = attr->disabled == 0;
  if (group_fd >= 0) {
    // Attached to a group that already counts: not scheduled until the
    // group's next sched-in.
    const auto leader = events_.find(group_fd);
    if (leader == events_.end()) {
      slot_used_[slot] = false;
      return -EBADF;
    }
    if (leader->second.enabled) e.in = false;
  }
  Program(e);
  events_[fd] = e;
  return fd;
}

ssize_t FakeKernelPmu::Read(int fd, void* buf, size_t len) {
  std::lock_guard lock(mutex_);
  auto it = events_.find(fd);
  if (it == events_.end()) return -EBADF;
  if (it->second.leader != fd) return -EINVAL;  // the daemon reads groups via their leader
  const int64_t now = NowNs();
  std::vector<uint64_t> words;
  words.push_back(0);  // nr
  for (auto& [member_fd, e] : events_) {
    if (e.leader != fd) continue;
    Advance(e, now);
    if (words.size() == 1) {
      words.push_back(static_cast<uint64_t>(e.enabled_ns));
      words.push_back(static_cast<uint64_t>(e.running_ns));
    }
    words.push_back(e.count);
    words.push_back(0);  // id
    ++words[0];
  }
  const size_t n = std::min(len, words.size() * sizeof(uint64_t));
  std::memcpy(buf, words.data(), n);
  return static_cast<ssize_t>(n);
}

int FakeKernelPmu::EnableGroup(int leader_fd) {
  std::lock_guard lock(mutex_);
  auto it = events_.find(leader_fd);
  if (it == events_.end()) return -EBADF;
  const int64_t now = NowNs();
  for (auto& [fd, e] : events_) {
    if (e.leader != leader_fd) continue;
    Advance(e, now);  // up to now in the old state
  }
  for (auto& [fd, e] : events_) {
    if (e.leader != leader_fd) continue;
    e.enabled = true;
    if (!e.frozen) {
      e.in = true;  // the group is scheduled in as a whole
      Program(e);
    }
    UpdatePage(e, now);
  }
  return 0;
}

int FakeKernelPmu::Close(int fd) {
  std::lock_guard lock(mutex_);
  auto it = events_.find(fd);
  if (it == events_.end()) return -EBADF;
  Event& e = it->second;
  closed_counts_[{e.cpu, e.config}] += e.count;
  slot_used_[e.slot] = false;
  if (e.page != nullptr) munmap(e.page, 4096);
  events_.erase(it);
  return 0;
}

const perf_event_mmap_page* FakeKernelPmu::MapPage(int fd) {
  std::lock_guard lock(mutex_);
  auto it = events_.find(fd);
  if (it == events_.end()) return nullptr;
  Event& e = it->second;
  if (e.page == nullptr) {
    void* mem = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    e.page = static_cast<perf_event_mmap_page*>(mem);
    UpdatePage(e, NowNs());
  }
  return e.page;
}

void FakeKernelPmu::UnmapPage(const perf_event_mmap_page* page) {
  std::lock_guard lock(mutex_);
  for (auto& [fd, e] : events_) {
    if (e.page == page) {
      munmap(e.page, 4096);
      e.page = nullptr;
    }
  }
}

void FakeKernelPmu::Count(int cpu, uint64_t config, uint64_t n) {
  std::lock_guard lock(mutex_);
  const uint64_t left = (uint64_t{1} << (options_.pmc_width - 1)) - 1;
  if (n >= left) throw std::invalid_argument("FakeKernelPmu::Count: more than one overflow");
  const int64_t now = NowNs();
  for (auto& [fd, e] : events_) {
    if (e.cpu != cpu || e.config != config || !e.in || e.frozen || !Enabled(e)) continue;
    e.count += n;
    const uint64_t raw = e.raw + n;
    if (raw > Mask()) {
      // Overflow: the kernel folds the count in, reprograms -left and
      // updates the page.
      Program(e);
      e.raw = (e.raw + (raw & Mask())) & Mask();
      UpdatePage(e, now);
    } else {
      e.raw = raw;
    }
    counters_[e.slot] = rdpmc_per_counter_disabled_ ? 0 : e.raw;
  }
}

void FakeKernelPmu::ScheduleOut(int cpu) {
  std::lock_guard lock(mutex_);
  const int64_t now = NowNs();
  for (auto& [fd, e] : events_) {
    if (e.cpu != cpu || !e.in) continue;
    Advance(e, now);
    e.in = false;
    UpdatePage(e, now);
  }
}

void FakeKernelPmu::ScheduleIn(int cpu) {
  std::lock_guard lock(mutex_);
  const int64_t now = NowNs();
  for (auto& [fd, e] : events_) {
    if (e.cpu != cpu || e.in || e.frozen) continue;
    Advance(e, now);
    e.in = true;
    Program(e);
    UpdatePage(e, now);
  }
}

void FakeKernelPmu::SetOnline(int cpu, bool online) {
  std::lock_guard lock(mutex_);
  offline_[cpu] = !online;
  if (online) return;
  const int64_t now = NowNs();
  for (auto& [fd, e] : events_) {
    if (e.cpu != cpu || e.frozen) continue;
    Advance(e, now);
    e.frozen = true;
    UpdatePage(e, now);
  }
}

void FakeKernelPmu::DisableUserRdpmcPerCounter(bool disabled) {
  std::lock_guard lock(mutex_);
  rdpmc_per_counter_disabled_ = disabled;
  for (const auto& [fd, e] : events_) counters_[e.slot] = disabled ? 0 : e.raw;
}

uint64_t FakeKernelPmu::TrueCount(int cpu, uint64_t config) const {
  std::lock_guard lock(mutex_);
  uint64_t total = 0;
  if (auto it = closed_counts_.find({cpu, config}); it != closed_counts_.end()) total = it->second;
  for (const auto& [fd, e] : events_) {
    if (e.cpu == cpu && e.config == config) total += e.count;
  }
  return total;
}

size_t FakeKernelPmu::open_fds() const {
  std::lock_guard lock(mutex_);
  return events_.size();
}

}  // namespace pmu::testing
