#include "pmu/collectors/permission.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>

namespace pmu::collectors {
namespace {

constexpr int kCapSysAdmin = 21;
constexpr int kCapPerfmon = 38;

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

std::optional<uint64_t> ParseHex(std::string_view text) {
  if (text.empty() || text.size() > 16) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    int digit = 0;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    value = value << 4 | static_cast<uint64_t>(digit);
  }
  return value;
}

std::optional<int> ParseSmallInt(std::string_view text) {
  text = Trim(text);
  bool negative = false;
  if (!text.empty() && text.front() == '-') {
    negative = true;
    text.remove_prefix(1);
  }
  if (text.empty() || text.size() > 9) return std::nullopt;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return negative ? -value : value;
}

std::string Join(const std::string& root, const std::string& path) {
  std::string out = root;
  if (!out.empty() && out.back() == '/') out.pop_back();
  return out + path;
}

const char* kGrant =
    "grant CAP_PERFMON (AmbientCapabilities=CAP_PERFMON in the systemd unit, or "
    "setcap cap_perfmon+ep on the binary; CAP_SYS_ADMIN before Linux 5.8)";

}  // namespace

std::string_view ToString(OpenFailure failure) {
  switch (failure) {
    case OpenFailure::kNone:
      return "none";
    case OpenFailure::kNotSupported:
      return "unsupported";
    case OpenFailure::kPermission:
      return "permission";
    case OpenFailure::kSeccomp:
      return "seccomp";
    case OpenFailure::kOther:
      return "error";
  }
  return "error";
}

void ParseProcStatus(std::string_view status, PermissionFacts& facts) {
  while (!status.empty()) {
    const size_t end = status.find('\n');
    const std::string_view line = status.substr(0, end);
    status.remove_prefix(end == std::string_view::npos ? status.size() : end + 1);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, colon);
    const std::string_view value = Trim(line.substr(colon + 1));
    if (key == "CapEff") {
      if (const auto caps = ParseHex(value)) {
        facts.cap_perfmon = (*caps >> kCapPerfmon & 1) != 0;
        facts.cap_sys_admin = (*caps >> kCapSysAdmin & 1) != 0;
      }
    } else if (key == "Seccomp") {
      if (const auto mode = ParseSmallInt(value); mode && *mode >= 0 && *mode <= 2) {
        facts.seccomp = *mode;
      }
    }
  }
}

PermissionFacts ReadPermissionFacts(const std::string& root) {
  PermissionFacts facts;
  {
    std::ifstream in(Join(root, "/proc/sys/kernel/perf_event_paranoid"));
    std::string text;
    if (std::getline(in, text)) facts.paranoid = ParseSmallInt(text);
  }
  std::ifstream in(Join(root, "/proc/self/status"));
  std::ostringstream text;
  text << in.rdbuf();
  ParseProcStatus(text.str(), facts);
  return facts;
}

OpenFailure ClassifyOpenError(int err, const PermissionFacts& facts) {
  switch (err) {
    case 0:
      return OpenFailure::kNone;
    case ENOENT:
    case EOPNOTSUPP:
    case ENODEV:
      return OpenFailure::kNotSupported;
    case EPERM:
      // The kernel's own perf checks answer EACCES; seccomp filters
      // (systemd's, nspawn's, docker's) answer EPERM.
      return facts.seccomp == 2 ? OpenFailure::kSeccomp : OpenFailure::kPermission;
    case EACCES:
      return OpenFailure::kPermission;
    default:
      return OpenFailure::kOther;
  }
}

std::string DescribePermissionDenied(int err, const PermissionFacts& facts) {
  const std::string errno_text = std::string("(") + std::strerror(err) + ")";
  if (ClassifyOpenError(err, facts) == OpenFailure::kSeccomp) {
    return "perf_event_open is refused " + errno_text +
           " by a seccomp filter (Seccomp: 2 in /proc/self/status): a container or "
           "sandbox blocks the system call; allow it (systemd-nspawn "
           "--system-call-filter=perf_event_open, SystemCallFilter=perf_event_open in the "
           "unit, a container runtime's seccomp profile)";
  }
  const bool capable = facts.cap_perfmon || facts.cap_sys_admin;
  if (!facts.paranoid) {
    return "permission denied " + errno_text +
           "; kernel.perf_event_paranoid cannot be read: " + kGrant;
  }
  const int level = *facts.paranoid;
  const std::string is = "kernel.perf_event_paranoid is " + std::to_string(level);
  if (capable) {
    return "permission denied " + errno_text + " although the process has " +
           (facts.cap_perfmon ? "CAP_PERFMON" : "CAP_SYS_ADMIN") + " (" + is +
           "): a security module (SELinux, AppArmor) or a container denies perf_event_open";
  }
  if (level >= 3) {
    return "permission denied " + errno_text + ": " + is +
           ", a level Debian's and Ubuntu's kernels add that refuses perf_event_open to every "
           "process without CAP_PERFMON; " +
           kGrant + ", or lower it: sysctl -w kernel.perf_event_paranoid=0";
  }
  if (level >= 1) {
    return "permission denied " + errno_text + ": " + is +
           ": CPU-wide counting needs CAP_PERFMON or a level of 0 or less; " + kGrant +
           ", or lower it: sysctl -w kernel.perf_event_paranoid=0";
  }
  return "permission denied " + errno_text + " although " + is +
         " allows CPU-wide counting: a security module (SELinux, AppArmor) or a container "
         "denies perf_event_open; " +
         kGrant;
}

}  // namespace pmu::collectors
