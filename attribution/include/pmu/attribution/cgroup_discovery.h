// Cgroup discovery for [cgroups]: where the cgroup v2 hierarchy is mounted,
// which of its cgroups match the configured patterns, and what a path says
// about the workload (systemd unit, Kubernetes pod and container).
//
// Paths are relative to the v2 root and start with '/': the root itself is
// "/", a service "/system.slice/ssh.service". A cgroup's id is its
// directory's inode number (the kernfs id the kernel and BPF programs use).
//
// Thread safety: pure functions (Discover reads the file system).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pmu::attribution {

// The cgroup v2 mount point from a mounts table (/proc/self/mounts format):
// /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one.
// "" when no cgroup2 file system is mounted.
std::string DetectCgroup2Root(const std::string& mounts_file = "/proc/self/mounts");

// Glob match of a cgroup path: '*' matches any run of characters within one
// level, '?' one character other than '/', '**' any run across levels. A
// pattern ending in "/**" also matches the directory it names
// ("/kubepods.slice/**" matches "/kubepods.slice" and everything below).
bool GlobMatch(std::string_view pattern, std::string_view path);

struct CgroupEntry {
  std::string path;  // relative to the root, "/..." ("/" for the root)
  uint64_t id = 0;   // inode number of the directory
  bool operator==(const CgroupEntry&) const = default;
};

struct Discovery {
  std::vector<CgroupEntry> counted;  // the first `max` matches, sorted by path
  size_t matched = 0;                // every match, counted or not
};

// Walks `root` (a cgroup v2 mount or a directory tree shaped like one) and
// returns the cgroups matching some include pattern and no exclude pattern.
// Directories that vanish during the walk are skipped.
Discovery Discover(const std::string& root, const std::vector<std::string>& include,
                   const std::vector<std::string>& exclude, size_t max);

// What a path reveals (empty strings when nothing):
//   unit:         the last level that is a systemd unit (*.service, *.scope,
//                 *.slice, *.socket, *.mount, *.swap)
//   pod_uid:      a Kubernetes pod: "kubepods-...-pod<uid>.slice" (systemd
//                 driver, '_' standing for '-') or "pod<uid>" (cgroupfs)
//   container_id: the level below the pod: "<runtime>-<id>.scope" (docker,
//                 cri-containerd, crio, libpod) or the bare id (cgroupfs)
struct CgroupLabels {
  std::string unit;
  std::string pod_uid;
  std::string container_id;
  bool operator==(const CgroupLabels&) const = default;
};
CgroupLabels LabelsFromPath(std::string_view path);

}  // namespace pmu::attribution
