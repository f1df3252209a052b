#include "pmu/collectors/event_group.h"

#include <linux/perf_event.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace pmu::collectors {
namespace {

constexpr uint64_t kReadFormat = PERF_FORMAT_GROUP | PERF_FORMAT_ID |
                                 PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;

// Layout of a PERF_FORMAT_GROUP|ID|TOTAL_TIME_* read.
struct GroupReadBuffer {
  uint64_t nr;
  uint64_t time_enabled;
  uint64_t time_running;
  struct {
    uint64_t value;
    uint64_t id;
  } entries[kMaxGroupEvents];
};

}  // namespace

std::unique_ptr<EventGroup> EventGroup::Open(PerfSyscalls& sys, const EventPlan& plan,
                                             size_t group_index, int cpu, OpenError* error) {
  std::unique_ptr<EventGroup> group(new EventGroup(sys, group_index, cpu));
  const PlannedGroup& pg = plan.groups.at(group_index);
  for (size_t i = 0; i < pg.members.size(); ++i) {
    const PlannedEvent& ev = plan.events.at(pg.members[i]);
    perf_event_attr attr = ev.attr;
    attr.read_format = kReadFormat;
    // The leader opens disabled; members follow it. EnableGroup below starts
    // the complete group, so every member counts from the same moment.
    attr.disabled = group->fds_.empty() ? 1 : 0;
    attr.inherit = 0;
    int leader = group->fds_.empty() ? -1 : group->fds_.front();
    int fd = sys.Open(&attr, -1, cpu, leader, 0);
    if (fd < 0) {
      if (error != nullptr) {
        error->err = -fd;
        error->event = pg.members[i];
        error->message = DescribeOpenError(ev.event, ev.attr, -fd);
      }
      return nullptr;  // the destructor closes what was opened
    }
    group->fds_.push_back(fd);
    uint64_t id = 0;
    if (ioctl(fd, PERF_EVENT_IOC_ID, &id) != 0) id = 0;  // fakes in tests have no ids
    group->ids_.push_back(id);
  }
  if (const int rc = sys.EnableGroup(group->fds_.front()); rc < 0) {
    if (error != nullptr) {
      error->err = -rc;
      error->event = pg.members.front();
      error->message = "cannot enable group '" + pg.name + "': " + std::strerror(-rc);
    }
    return nullptr;
  }
  return group;
}

bool EventGroup::MapPages() {
  if (!pages_.empty()) return true;
  for (int fd : fds_) {
    const perf_event_mmap_page* page = sys_.MapPage(fd);
    if (page == nullptr) {
      for (auto* p : pages_) sys_.UnmapPage(p);
      pages_.clear();
      return false;
    }
    pages_.push_back(page);
  }
  return true;
}

EventGroup::~EventGroup() {
  for (auto* p : pages_) sys_.UnmapPage(p);
  // Members before the leader.
  for (auto it = fds_.rbegin(); it != fds_.rend(); ++it) sys_.Close(*it);
}

int EventGroup::Read(GroupSample* out) noexcept {
  GroupReadBuffer buf;
  size_t want = 3 * sizeof(uint64_t) + fds_.size() * 2 * sizeof(uint64_t);
  ssize_t n = sys_.Read(fds_.front(), &buf, want);
  if (n < 0) return static_cast<int>(n);
  if (static_cast<size_t>(n) < want || buf.nr != fds_.size()) return -EIO;
  out->group = static_cast<uint32_t>(group_index_);
  out->count = static_cast<uint32_t>(buf.nr);
  out->time_enabled = buf.time_enabled;
  out->time_running = buf.time_running;
  for (size_t i = 0; i < fds_.size(); ++i) {
    // Entries come in group order; match ids where the kernel gave them.
    size_t slot = i;
    if (ids_[i] != 0 && buf.entries[i].id != ids_[i]) {
      for (size_t j = 0; j < fds_.size(); ++j) {
        if (ids_[j] == buf.entries[i].id) slot = j;
      }
    }
    out->values[slot] = buf.entries[i].value;
  }
  return 0;
}

}  // namespace pmu::collectors
