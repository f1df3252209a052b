// perf mode: one PERF_FLAG_PID_CGROUP event per cgroup x CPU x event. The
// kernel counts a cgroup event while a task of that cgroup or of one of its
// descendants runs on the CPU; its time enabled is the cgroup's time there.
#include <fcntl.h>
#include <unistd.h>

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
      : attrs_(std::move(attrs)), cpus_(std::move(cpus)), sys_(sys) {}
  ~PerfBackend() override {
    for (auto& [id, fds] : fds_) CloseAll(fds);
  }

  // Opens every (event, CPU) of the cgroup whose directory is `dir`.
  bool Open(const std::string& dir, std::vector<int>& fds, std::string* error) {
    const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
      *error = "cannot open " + dir + ": " + std::strerror(errno);
      return false;
    }
    for (perf_event_attr attr : attrs_) {
      for (int cpu : cpus_) {
        const int fd = sys_.Open(&attr, dir_fd, cpu, -1, PERF_FLAG_PID_CGROUP);
        if (fd < 0) {
          *error = collectors::DescribeOpenError(dir, attr, -fd);
          CloseAll(fds);
          close(dir_fd);
          return false;
        }
        fds.push_back(fd);
      }
    }
    close(dir_fd);
    return true;
  }

  bool Add(const CgroupEntry& cgroup, const std::string& dir, std::string* error) override {
    std::vector<int> fds;
    if (!Open(dir, fds, error)) return false;
    fds_[cgroup.id] = std::move(fds);
    return true;
  }

  void Remove(uint64_t id) override {
    const auto it = fds_.find(id);
    if (it == fds_.end()) return;
    CloseAll(it->second);
    fds_.erase(it);
  }

  void Read(uint64_t id, std::vector<RawReading>& out) override {
    out.assign(attrs_.size(), RawReading{});
    const auto it = fds_.find(id);
    if (it == fds_.end()) return;
    for (size_t e = 0; e < attrs_.size(); ++e) {
      for (size_t c = 0; c < cpus_.size(); ++c) {
        uint64_t v[3] = {};  // value, time enabled, time running
        if (sys_.Read(it->second[e * cpus_.size() + c], v, sizeof(v)) != sizeof(v)) continue;
        out[e].counter += v[0];
        out[e].enabled += v[1];
        out[e].running += v[2];
      }
    }
  }

  size_t open_fds() const override {
    size_t n = 0;
    for (const auto& [id, fds] : fds_) n += fds.size();
    return n;
  }

 private:
  void CloseAll(std::vector<int>& fds) {
    for (int fd : fds) sys_.Close(fd);
    fds.clear();
  }

  std::vector<perf_event_attr> attrs_;
  std::vector<int> cpus_;
  collectors::PerfSyscalls& sys_;
  std::map<uint64_t, std::vector<int>> fds_;  // id -> [event * cpus + cpu]
};

}  // namespace

std::unique_ptr<Backend> MakePerfBackend(const std::vector<perf_event_attr>& attrs,
                                         const std::vector<int>& cpus, const std::string& root,
                                         collectors::PerfSyscalls& sys, std::string* error) {
  auto backend = std::make_unique<PerfBackend>(attrs, cpus, sys);
  // A probe on the root cgroup: the privileges and the kernel support it.
  std::vector<int> probe;
  if (!backend->Open(root, probe, error)) return nullptr;
  for (int fd : probe) sys.Close(fd);
  return backend;
}

}  // namespace pmu::attribution
