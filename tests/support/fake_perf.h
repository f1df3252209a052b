// A PerfSyscalls fake for tests: fails chosen (event type/config, CPU) pairs
// with a chosen errno and otherwise hands out fake fds whose reads return
// scripted group readings.
#pragma once

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <tuple>
#include <vector>

#include "pmu/collectors/perf_syscalls.h"

namespace pmu::testing {

class FakePerf : public collectors::PerfSyscalls {
 public:
  // Fail opens of (type, config) on `cpu` (-1: any CPU) with `err`.
  void FailOpen(uint32_t type, uint64_t config, int cpu, int err) {
    failures_[{type, config, cpu}] = err;
  }
  int Open(perf_event_attr* attr, pid_t, int cpu, int group_fd, unsigned long) override {
    std::lock_guard lock(mu_);
    for (int c : {cpu, -1}) {
      auto it = failures_.find({attr->type, attr->config, c});
      if (it != failures_.end()) return -it->second;
    }
    int fd = next_fd_++;
    open_.insert(fd);
    opened_.emplace_back(attr->type, attr->config, cpu);
    leaders_[fd] = group_fd;
    ++opens_;
    return fd;
  }
  // While blocked, every Read waits (a wedged PMU read, for watchdog tests).
  void BlockReads(bool block) {
    {
      std::lock_guard lock(mu_);
      blocked_ = block;
    }
    cv_.notify_all();
  }
  ssize_t Read(int fd, void* buf, size_t len) override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !blocked_; });
    if (!open_.count(fd)) return -EBADF;
    size_t members = 0;
    for (auto [f, leader] : leaders_) members += (f == fd || leader == fd) && open_.count(f);
    uint64_t words[3 + 2 * 16] = {members, ++reads_ * 1000, reads_ * 1000};
    for (size_t i = 0; i < members; ++i) words[3 + 2 * i] = reads_ * (i + 1);
    if (read_values) {
      uint64_t values[16] = {};
      read_values(fd, values, members);
      for (size_t i = 0; i < members; ++i) words[3 + 2 * i] = values[i];
    }
    size_t n = std::min(len, (3 + 2 * members) * sizeof(uint64_t));
    std::memcpy(buf, words, n);
    return static_cast<ssize_t>(n);
  }
  int Close(int fd) override {
    std::lock_guard lock(mu_);
    if (!open_.erase(fd)) return -EBADF;
    leaders_.erase(fd);
    enabled_.erase(fd);
    return 0;
  }
  int EnableGroup(int leader_fd) override {
    std::lock_guard lock(mu_);
    if (!open_.count(leader_fd)) return -EBADF;
    enabled_.insert(leader_fd);
    return 0;
  }
  // Whether the group led by `leader_fd` was enabled (opened groups must be).
  bool enabled(int leader_fd) {
    std::lock_guard lock(mu_);
    return enabled_.count(leader_fd) > 0;
  }
  // (type, config, cpu) of every successful open, in order.
  std::vector<std::tuple<uint32_t, uint64_t, int>> opened() {
    std::lock_guard lock(mu_);
    return opened_;
  }
  // No perf_event_mmap_page unless a test provides pages (rdpmc tests).
  std::function<const perf_event_mmap_page*(int fd)> map_page;
  const perf_event_mmap_page* MapPage(int fd) override { return map_page ? map_page(fd) : nullptr; }
  void UnmapPage(const perf_event_mmap_page*) override {}
  // Overrides the scripted group readings: fills `values` (members in group
  // order) for a read of the group led by `leader_fd`.
  std::function<void(int leader_fd, uint64_t* values, size_t members)> read_values;

  size_t open_count() {
    std::lock_guard lock(mu_);
    return open_.size();
  }
  size_t opens() {
    std::lock_guard lock(mu_);
    return opens_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool blocked_ = false;
  std::map<std::tuple<uint32_t, uint64_t, int>, int> failures_;
  std::set<int> open_;
  std::set<int> enabled_;
  std::vector<std::tuple<uint32_t, uint64_t, int>> opened_;
  std::map<int, int> leaders_;
  int next_fd_ = 1000;
  size_t opens_ = 0;
  uint64_t reads_ = 0;
};

}  // namespace pmu::testing
