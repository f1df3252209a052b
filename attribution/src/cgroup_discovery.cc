#include "pmu/attribution/cgroup_discovery.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>

namespace pmu::attribution {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

bool Match(std::string_view p, std::string_view s) {
  while (!p.empty()) {
    if (StartsWith(p, "**")) {
      const std::string_view rest = p.substr(2);
      for (size_t i = 0; i <= s.size(); ++i) {
        if (Match(rest, s.substr(i))) return true;
      }
      return false;
    }
    if (p.front() == '*') {
      const std::string_view rest = p.substr(1);
      for (size_t i = 0; i <= s.size(); ++i) {
        if (Match(rest, s.substr(i))) return true;
        if (i < s.size() && s[i] == '/') return false;
      }
      return false;
    }
    if (s.empty()) return false;
    if (p.front() == '?' ? s.front() == '/' : p.front() != s.front()) return false;
    p.remove_prefix(1);
    s.remove_prefix(1);
  }
  return s.empty();
}

bool MatchesAny(const std::vector<std::string>& patterns, std::string_view path) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return GlobMatch(p, path); });
}

// Depth-first walk below `dir` (relative path `rel`), collecting matches.
void Walk(int dir_fd, const std::string& rel, const std::vector<std::string>& include,
          const std::vector<std::string>& exclude, std::vector<CgroupEntry>& out) {
  DIR* dir = fdopendir(dir_fd);
  if (dir == nullptr) {
    close(dir_fd);
    return;
  }
  while (const dirent* entry = readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name == "." || name == ".." || entry->d_type != DT_DIR) continue;
    const int child = openat(dirfd(dir), entry->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (child < 0) continue;  // removed meanwhile
    struct stat st {};
    if (fstat(child, &st) != 0) {
      close(child);
      continue;
    }
    const std::string path = (rel == "/" ? "" : rel) + "/" + std::string(name);
    if (MatchesAny(include, path) && !MatchesAny(exclude, path)) {
      out.push_back({path, static_cast<uint64_t>(st.st_ino)});
    }
    Walk(child, path, include, exclude, out);
  }
  closedir(dir);
}

}  // namespace

std::string DetectCgroup2Root(const std::string& mounts_file) {
  std::ifstream in(mounts_file);
  std::string line;
  std::string found;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string device, mount_point, type;
    if (!(fields >> device >> mount_point >> type)) continue;
    if (type != "cgroup2") continue;
    // The shortest mount point: the host's hierarchy rather than a bind
    // mount of a part of it.
    if (found.empty() || mount_point.size() < found.size()) found = mount_point;
  }
  return found;
}

bool GlobMatch(std::string_view pattern, std::string_view path) {
  if (EndsWith(pattern, "/**") && path == pattern.substr(0, pattern.size() - 3)) return true;
  return Match(pattern, path);
}

Discovery Discover(const std::string& root, const std::vector<std::string>& include,
                   const std::vector<std::string>& exclude, size_t max) {
  Discovery result;
  const int root_fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return result;
  std::vector<CgroupEntry> all;
  struct stat st {};
  if (fstat(root_fd, &st) == 0 && MatchesAny(include, "/") && !MatchesAny(exclude, "/")) {
    all.push_back({"/", static_cast<uint64_t>(st.st_ino)});
  }
  Walk(root_fd, "/", include, exclude, all);
  std::sort(all.begin(), all.end(),
            [](const CgroupEntry& a, const CgroupEntry& b) { return a.path < b.path; });
  result.matched = all.size();
  if (all.size() > max) all.resize(max);
  result.counted = std::move(all);
  return result;
}

CgroupLabels LabelsFromPath(std::string_view path) {
  constexpr std::array<std::string_view, 6> kUnitSuffixes{".service", ".scope", ".slice",
                                                          ".socket",  ".mount", ".swap"};
  constexpr std::array<std::string_view, 5> kRuntimePrefixes{"cri-containerd-", "docker-", "crio-",
                                                             "libpod-", "containerd-"};
  CgroupLabels labels;
  std::vector<std::string_view> levels;
  for (size_t start = 0; start < path.size();) {
    const size_t slash = path.find('/', start);
    const size_t end = slash == std::string_view::npos ? path.size() : slash;
    if (end > start) levels.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  for (std::string_view level : levels) {
    if (std::any_of(kUnitSuffixes.begin(), kUnitSuffixes.end(),
                    [&](std::string_view s) { return EndsWith(level, s); })) {
      labels.unit = std::string(level);
    }
  }
  for (size_t i = 0; i < levels.size(); ++i) {
    std::string_view level = levels[i];
    std::string uid;
    if (const size_t pod = level.rfind("-pod");
        StartsWith(level, "kubepods") && EndsWith(level, ".slice") && pod != std::string::npos) {
      uid = std::string(level.substr(pod + 4, level.size() - pod - 4 - 6));
      std::replace(uid.begin(), uid.end(), '_', '-');
    } else if (StartsWith(level, "pod") && i > 0 && StartsWith(levels[0], "kubepods")) {
      uid = std::string(level.substr(3));
    }
    if (uid.empty()) continue;
    labels.pod_uid = uid;
    if (i + 1 < levels.size()) {
      std::string_view child = levels[i + 1];
      if (EndsWith(child, ".scope")) child.remove_suffix(6);
      for (std::string_view prefix : kRuntimePrefixes) {
        if (StartsWith(child, prefix)) {
          child.remove_prefix(prefix.size());
          break;
        }
      }
      labels.container_id = std::string(child);
    } else {
      labels.container_id.clear();
    }
  }
  return labels;
}

}  // namespace pmu::attribution
