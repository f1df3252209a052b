// perf mode: one PERF_FLAG_PID_CGROUP event per cgroup x CPU x event. The
// kernel counts a cgroup event while a task of that cgroup or of one of its
// descendants runs on the CPU; its time enabled is the cgroup's time there.
//
// Hotplug: an event of a CPU that went offline stops for good (it stays off
// when the CPU returns), so the fds of an offline CPU are read a last time
// into `retired` and closed, and a CPU that comes online gets new ones.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "backend.h"
#include "pmu/collectors/event_plan.h"

namespace pmu::attribution {
namespace {

class PerfBackend final : public Backend {
 public:
  PerfBackend(std::vector<perf_event_attr> attrs, std::vector<int> cpus,
              collectors::PerfSyscalls& sys)
      : attrs_(std::move(attrs)), cpus_(std::move(cpus)), sys_(sys), online_(cpus_.size()) {}
  ~PerfBackend() override {
    for (auto& [id, cgroup] : cgroups_) {
      for (int& fd : cgroup.fds) Close(fd);
    }
  }

  // Opens every event of the cgroup whose directory is `dir` on CPU index
  // `c` into fds[event * cpus + c]; none on failure (`dir_gone`: the
  // cgroup's directory could not be opened).
  bool OpenCpu(const std::string& dir, size_t c, std::vector<int>& fds, std::string* error,
               bool* dir_gone = nullptr) {
    const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
      *error = "cannot open " + dir + ": " + std::strerror(errno);
      if (dir_gone != nullptr) *dir_gone = true;
      return false;
    }
    bool ok = true;
    for (size_t e = 0; e < attrs_.size() && ok; ++e) {
      perf_event_attr attr = attrs_[e];
      const int fd = sys_.Open(&attr, dir_fd, cpus_[c], -1, PERF_FLAG_PID_CGROUP);
      if (fd < 0) {
        *error = collectors::DescribeOpenError(dir, attr, -fd);
        ok = false;
      } else {
        fds[e * cpus_.size() + c] = fd;
      }
    }
    close(dir_fd);
    if (!ok) {
      for (size_t e = 0; e < attrs_.size(); ++e) Close(fds[e * cpus_.size() + c]);
    }
    return ok;
  }

  // Marks the CPUs of `online` online without opening anything (creation).
  void SetOnline(const std::vector<int>& online) {
    for (size_t c = 0; c < cpus_.size(); ++c) {
      online_[c] = std::find(online.begin(), online.end(), cpus_[c]) != online.end();
    }
  }

  // Every online CPU of a cgroup: the probe at creation, Add.
  bool Open(const std::string& dir, std::vector<int>& fds, std::string* error) {
    fds.assign(attrs_.size() * cpus_.size(), -1);
    for (size_t c = 0; c < cpus_.size(); ++c) {
      if (!online_[c]) continue;
      if (!OpenCpu(dir, c, fds, error)) {
        for (int& fd : fds) Close(fd);
        return false;
      }
    }
    return true;
  }

  bool Add(const CgroupEntry& cgroup, const std::string& dir, std::string* error) override {
    if (cgroups_.count(cgroup.id) != 0) return true;
    Cgroup added;
    added.dir = dir;
    added.retired.assign(attrs_.size(), RawReading{});
    if (!Open(dir, added.fds, error)) return false;
    cgroups_.emplace(cgroup.id, std::move(added));
    return true;
  }

  void Remove(uint64_t id) override {
    const auto it = cgroups_.find(id);
    if (it == cgroups_.end()) return;
    for (int& fd : it->second.fds) Close(fd);
    cgroups_.erase(it);
  }

  void SyncCpus(const std::vector<int>& online) override {
    for (size_t c = 0; c < cpus_.size(); ++c) {
      const bool on = std::find(online.begin(), online.end(), cpus_[c]) != online.end();
      if (on == online_[c]) continue;
      if (!on) {
        for (auto& [id, cgroup] : cgroups_) {
          for (size_t e = 0; e < attrs_.size(); ++e) {
            int& fd = cgroup.fds[e * cpus_.size() + c];
            AddReading(fd, cgroup.retired[e]);
            Close(fd);
          }
        }
        online_[c] = false;
        continue;
      }
      // All cgroups or none: a CPU just online may refuse perf events for a
      // moment (ENODEV until perf's own hotplug step ran); the next call
      // tries again. A cgroup removed meanwhile is dropped at the rescan.
      bool refused = false;
      for (auto& [id, cgroup] : cgroups_) {
        std::string error;
        bool gone = false;
        if (!OpenCpu(cgroup.dir, c, cgroup.fds, &error, &gone) && !gone) {
          refused = true;
          break;
        }
      }
      if (refused) {
        for (auto& [id, cgroup] : cgroups_) {
          for (size_t e = 0; e < attrs_.size(); ++e) Close(cgroup.fds[e * cpus_.size() + c]);
        }
        continue;
      }
      online_[c] = true;
    }
  }

  void Read(uint64_t id, std::vector<RawReading>& out) override {
    out.assign(attrs_.size(), RawReading{});
    const auto it = cgroups_.find(id);
    if (it == cgroups_.end()) return;
    for (size_t e = 0; e < attrs_.size(); ++e) {
      out[e] = it->second.retired[e];
      for (size_t c = 0; c < cpus_.size(); ++c) {
        AddReading(it->second.fds[e * cpus_.size() + c], out[e]);
      }
    }
  }

  size_t open_fds() const override {
    size_t n = 0;
    for (const auto& [id, cgroup] : cgroups_) {
      n += static_cast<size_t>(
          std::count_if(cgroup.fds.begin(), cgroup.fds.end(), [](int fd) { return fd >= 0; }));
    }
    return n;
  }

 private:
  struct Cgroup {
    std::string dir;
    std::vector<int> fds;             // [event * cpus + cpu]; -1: CPU offline
    std::vector<RawReading> retired;  // per event: the CPUs closed since Add
  };

  void AddReading(int fd, RawReading& into) {
    if (fd < 0) return;
    uint64_t v[3] = {};  // value, time enabled, time running
    if (sys_.Read(fd, v, sizeof(v)) != sizeof(v)) return;
    into.counter += v[0];
    into.enabled += v[1];
    into.running += v[2];
  }

  void Close(int& fd) {
    if (fd >= 0) sys_.Close(fd);
    fd = -1;
  }

  std::vector<perf_event_attr> attrs_;
  std::vector<int> cpus_;
  collectors::PerfSyscalls& sys_;
  std::vector<bool> online_;  // per CPU index: counted now
  std::map<uint64_t, Cgroup> cgroups_;
};

}  // namespace

std::unique_ptr<Backend> MakePerfBackend(const std::vector<perf_event_attr>& attrs,
                                         const std::vector<int>& cpus,
                                         const std::vector<int>& online, const std::string& root,
                                         collectors::PerfSyscalls& sys, std::string* error) {
  auto backend = std::make_unique<PerfBackend>(attrs, cpus, sys);
  backend->SetOnline(online);
  // A probe on the root cgroup: the privileges and the kernel support it.
  std::vector<int> probe;
  if (!backend->Open(root, probe, error)) return nullptr;
  for (int fd : probe) {
    if (fd >= 0) sys.Close(fd);
  }
  return backend;
}

}  // namespace pmu::attribution
