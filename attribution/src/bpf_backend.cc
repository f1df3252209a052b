// bpf mode: a CPU-wide counter per event x CPU, the BPF program of
// bpf/cgroup_attr.bpf.c on sched_switch, and per-cgroup slots in its maps.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <vector>

#include "backend.h"
#include "pmu/collectors/event_plan.h"

#ifdef PMU_HAVE_BPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "cgroup_attr.skel.h"
#endif

namespace pmu::attribution {

std::string BpfUnavailableReason() {
#ifndef PMU_HAVE_BPF
  return PMU_BPF_UNAVAILABLE_REASON;
#else
  struct stat st {};
  if (stat("/sys/kernel/btf/vmlinux", &st) != 0) {
    return "the kernel has no BTF (/sys/kernel/btf/vmlinux: " + std::string(std::strerror(errno)) +
           ")";
  }
  return "";
#endif
}

#ifndef PMU_HAVE_BPF

std::unique_ptr<Backend> MakeBpfBackend(const std::vector<perf_event_attr>&,
                                        const std::vector<int>&, const std::vector<int>&, size_t,
                                        collectors::PerfSyscalls&, std::string* error) {
  *error = BpfUnavailableReason();
  return nullptr;
}

#else

namespace {

// The program's limits (cgroup_attr.bpf.c).
constexpr size_t kMaxEvents = 8;

// struct pmu_reading in the BPF program.
struct Reading {
  uint64_t counter;
  uint64_t enabled;
  uint64_t running;
};

std::string Errno(int err) { return std::strerror(err < 0 ? -err : err); }

class BpfBackend final : public Backend {
 public:
  BpfBackend(std::vector<perf_event_attr> attrs, std::vector<int> cpus, size_t max,
             collectors::PerfSyscalls& sys)
      : attrs_(std::move(attrs)),
        cpus_(std::move(cpus)),
        sys_(sys),
        slots_(2 * max + 16),
        counter_fds_(attrs_.size() * cpus_.size(), -1) {}

  ~BpfBackend() override {
    if (skel_ != nullptr) cgroup_attr__destroy(skel_);  // detaches, closes maps
    for (int fd : counter_fds_) {
      if (fd >= 0) sys_.Close(fd);
    }
  }

  // Opens every event's counter on CPU index `c` and stores them in the
  // program's map, each under a new generation; none on failure.
  bool OpenCpu(size_t c, std::string* error) {
    const int cpu = cpus_[c];
    for (size_t e = 0; e < attrs_.size(); ++e) {
      perf_event_attr attr = attrs_[e];
      const int fd = sys_.Open(&attr, -1, cpu, -1, 0);
      if (fd < 0) {
        *error = collectors::DescribeOpenError("cpu" + std::to_string(cpu), attr, -fd);
        CloseCpu(c);
        return false;
      }
      counter_fds_[e * cpus_.size() + c] = fd;
      const __u32 key = static_cast<__u32>(e * nr_cpus_ + static_cast<size_t>(cpu));
      __u64 gen = 0;
      bpf_map_lookup_elem(bpf_map__fd(skel_->maps.gens), &key, &gen);
      ++gen;
      if (bpf_map_update_elem(bpf_map__fd(skel_->maps.gens), &key, &gen, BPF_ANY) != 0 ||
          bpf_map_update_elem(bpf_map__fd(skel_->maps.counters), &key, &fd, BPF_ANY) != 0) {
        *error = "cannot store counter in the BPF map: " + Errno(errno);
        CloseCpu(c);
        return false;
      }
    }
    online_.push_back(cpu);
    return true;
  }

  // Runs `flush` on `cpu`: attributes what ran there since the CPU's last
  // reading and takes a new one. On a CPU whose counters were just opened it
  // takes their base and replaces what the program remembers from before
  // the CPU went offline, at once: the first switch there may go unseen
  // (docs/ATTRIBUTION.md), and the base would otherwise be taken only at
  // the first seen one, after the task switched in unseen had run a while.
  void Flush(int cpu) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .flags = BPF_F_TEST_RUN_ON_CPU,
                .cpu = static_cast<__u32>(cpu));
    bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.pmu_flush), &opts);
  }

  // Takes CPU index `c`'s counters out of the program's map and closes them.
  // What they counted since the CPU's last switch is not attributed: the
  // CPU ran its offline path (the idle and stopper tasks) last.
  void CloseCpu(size_t c) {
    for (size_t e = 0; e < attrs_.size(); ++e) {
      int& fd = counter_fds_[e * cpus_.size() + c];
      if (fd < 0) continue;
      const __u32 key = static_cast<__u32>(e * nr_cpus_ + static_cast<size_t>(cpus_[c]));
      bpf_map_delete_elem(bpf_map__fd(skel_->maps.counters), &key);
      sys_.Close(fd);
      fd = -1;
    }
    online_.erase(std::remove(online_.begin(), online_.end(), cpus_[c]), online_.end());
  }

  void SyncCpus(const std::vector<int>& online) override {
    for (size_t c = 0; c < cpus_.size(); ++c) {
      const bool on = std::find(online.begin(), online.end(), cpus_[c]) != online.end();
      const bool counted = std::find(online_.begin(), online_.end(), cpus_[c]) != online_.end();
      if (on && !counted) {
        std::string error;  // not ready yet (ENODEV): again at the next call
        if (OpenCpu(c, &error)) Flush(cpus_[c]);
      } else if (!on && counted) {
        CloseCpu(c);
      }
    }
  }

  bool Init(const std::vector<int>& online, std::string* error) {
    const int possible = libbpf_num_possible_cpus();
    if (possible <= 0) {
      *error = "cannot count the possible CPUs: " + Errno(possible);
      return false;
    }
    nr_cpus_ = static_cast<size_t>(possible);
    if (attrs_.size() > kMaxEvents) {
      *error = "bpf mode attributes at most " + std::to_string(kMaxEvents) + " events, got " +
               std::to_string(attrs_.size()) + " (list fewer in [cgroups] events)";
      return false;
    }
    skel_ = cgroup_attr__open();
    if (skel_ == nullptr) {
      *error = "cannot open the BPF object: " + Errno(errno);
      return false;
    }
    skel_->rodata->nr_cpus = static_cast<__u32>(nr_cpus_);
    skel_->rodata->nr_events = static_cast<__u32>(attrs_.size());
    bpf_map__set_max_entries(skel_->maps.counters, static_cast<__u32>(nr_cpus_ * attrs_.size()));
    bpf_map__set_max_entries(skel_->maps.gens, static_cast<__u32>(nr_cpus_ * attrs_.size()));
    bpf_map__set_max_entries(skel_->maps.tracked, static_cast<__u32>(slots_));
    bpf_map__set_max_entries(skel_->maps.counts, static_cast<__u32>(slots_ * attrs_.size()));
    if (const int err = cgroup_attr__load(skel_); err != 0) {
      *error = "cannot load the BPF program (needs CAP_BPF and CAP_PERFMON, and kernel BTF): " +
               Errno(err);
      return false;
    }
    // The counter set: every event on every online counted CPU, CPU-wide.
    for (size_t c = 0; c < cpus_.size(); ++c) {
      if (std::find(online.begin(), online.end(), cpus_[c]) == online.end()) continue;
      if (!OpenCpu(c, error)) return false;
    }
    link_ = bpf_program__attach(skel_->progs.pmu_on_switch);
    if (link_ == nullptr) {
      *error = "cannot attach to sched_switch: " + Errno(errno);
      return false;
    }
    skel_->links.pmu_on_switch = link_;  // destroyed with the skeleton
    skel_->links.pmu_on_attach = bpf_program__attach(skel_->progs.pmu_on_attach);
    if (skel_->links.pmu_on_attach == nullptr) {
      *error = "cannot attach to cgroup_attach_task: " + Errno(errno);
      return false;
    }
    for (size_t s = slots_; s > 0; --s) free_.push_back(s - 1);  // lowest on top
    values_.resize(slots_ * attrs_.size() * nr_cpus_);
    return true;
  }

  bool Add(const CgroupEntry& cgroup, const std::string&, std::string* error) override {
    if (slot_of_.count(cgroup.id) != 0) return true;
    if (free_.empty()) {
      *error = "no free slot in the BPF maps";
      return false;
    }
    const uint32_t slot = static_cast<uint32_t>(free_.back());
    // Zero the slot before the program can find it.
    const std::vector<Reading> zero(nr_cpus_, Reading{});
    for (size_t e = 0; e < attrs_.size(); ++e) {
      const __u32 key = static_cast<__u32>(slot * attrs_.size() + e);
      if (bpf_map_update_elem(bpf_map__fd(skel_->maps.counts), &key, zero.data(), BPF_ANY) != 0) {
        *error = "cannot reset a BPF map slot: " + Errno(errno);
        return false;
      }
    }
    const __u64 id = cgroup.id;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.tracked), &id, &slot, BPF_ANY) != 0) {
      *error = "cannot track the cgroup in the BPF map: " + Errno(errno);
      return false;
    }
    free_.pop_back();
    slot_of_[cgroup.id] = slot;
    return true;
  }

  void Remove(uint64_t id) override {
    const auto it = slot_of_.find(id);
    if (it == slot_of_.end()) return;
    const __u64 key = id;
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.tracked), &key);
    // A program that looked the id up just before may still add to the
    // slot: it is reused only after the next round.
    quarantine_.push_back(it->second);
    slot_of_.erase(it);
  }

  void Refresh() override {
    if (!released_.empty()) {
      free_.insert(free_.end(), released_.begin(), released_.end());
      std::sort(free_.begin(), free_.end(), std::greater<>());  // lowest on top
    }
    released_ = std::move(quarantine_);
    quarantine_.clear();
    // Attribute what each CPU's current task ran since its last switch.
    for (int cpu : online_) Flush(cpu);
    ReadCounts();
  }

  void Read(uint64_t id, std::vector<RawReading>& out) override {
    out.assign(attrs_.size(), RawReading{});
    const auto it = slot_of_.find(id);
    if (it == slot_of_.end()) return;
    for (size_t e = 0; e < attrs_.size(); ++e) {
      const Reading* per_cpu = &values_[(it->second * attrs_.size() + e) * nr_cpus_];
      for (size_t c = 0; c < nr_cpus_; ++c) {
        out[e].counter += per_cpu[c].counter;
        out[e].enabled += per_cpu[c].enabled;
        out[e].running += per_cpu[c].running;
      }
    }
  }

  // The counters, six maps (and .rodata), three programs, two links.
  size_t open_fds() const override {
    return static_cast<size_t>(std::count_if(counter_fds_.begin(), counter_fds_.end(),
                                             [](int fd) { return fd >= 0; })) +
           7 + 3 + 2;
  }

 private:
  // The entries of `counts` up to the highest slot in use into values_: in
  // one batch, else one by one. Slots are handed out lowest first, so the
  // copy is as large as the cgroups counted, not as [cgroups] max.
  void ReadCounts() {
    const int fd = bpf_map__fd(skel_->maps.counts);
    size_t used = 0;
    for (const auto& [id, slot] : slot_of_) used = std::max(used, slot + 1);
    const size_t entries = used * attrs_.size();
    if (entries == 0) return;
    if (batch_) {
      std::vector<__u32> keys(entries);
      __u32 out_batch = 0;
      __u32 count = static_cast<__u32>(entries);
      LIBBPF_OPTS(bpf_map_batch_opts, opts);
      const int err =
          bpf_map_lookup_batch(fd, nullptr, &out_batch, keys.data(), values_.data(), &count, &opts);
      if ((err == 0 || errno == ENOENT) && count == entries) return;
      batch_ = false;
    }
    for (const auto& [id, slot] : slot_of_) {
      for (size_t e = 0; e < attrs_.size(); ++e) {
        const __u32 key = static_cast<__u32>(slot * attrs_.size() + e);
        bpf_map_lookup_elem(fd, &key, &values_[key * nr_cpus_]);
      }
    }
  }

  std::vector<perf_event_attr> attrs_;
  std::vector<int> cpus_;
  collectors::PerfSyscalls& sys_;
  size_t slots_;
  size_t nr_cpus_ = 0;
  cgroup_attr* skel_ = nullptr;
  bpf_link* link_ = nullptr;
  std::vector<int> counter_fds_;  // [event * cpus + cpu index]; -1: CPU offline
  std::vector<int> online_;       // the CPUs counted now
  std::vector<size_t> free_;
  std::vector<size_t> quarantine_;  // removed this round
  std::vector<size_t> released_;    // removed last round; free at the next
  std::map<uint64_t, size_t> slot_of_;
  std::vector<Reading> values_;  // [(slot * events + event) * nr_cpus + cpu]
  bool batch_ = true;
};

}  // namespace

std::unique_ptr<Backend> MakeBpfBackend(const std::vector<perf_event_attr>& attrs,
                                        const std::vector<int>& cpus,
                                        const std::vector<int>& online, size_t max_cgroups,
                                        collectors::PerfSyscalls& sys, std::string* error) {
  if (std::string reason = BpfUnavailableReason(); !reason.empty()) {
    *error = reason;
    return nullptr;
  }
  auto backend = std::make_unique<BpfBackend>(attrs, cpus, max_cgroups, sys);
  if (!backend->Init(online, error)) return nullptr;
  return backend;
}

#endif

}  // namespace pmu::attribution
