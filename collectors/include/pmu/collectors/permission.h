// Why perf_event_open was refused, in words an operator can act on.
//
// A host where every event fails for lack of permission must not look like a
// host without a PMU. This module reads what decides permission — the
// kernel.perf_event_paranoid level, the process's effective capabilities and
// its seccomp mode (/proc/self/status) — classifies an errno, and writes one
// message naming what is missing and how to change it:
//   - a seccomp filter (Seccomp: 2) answering EPERM: the filter is named
//     (systemd-nspawn, container runtimes and SystemCallFilter= install one);
//   - perf_event_paranoid 3 or more: Debian's and Ubuntu's kernels patch this
//     level in to refuse perf_event_open to every unprivileged process;
//   - 1 or 2: CPU-wide counting needs CAP_PERFMON or a level of 0 or less;
//   - otherwise (level <= 0, capability present): a security module or a
//     container denies it.
// The root directory is injectable (tests use fake trees).
//
// Thread safety: free functions, reentrant.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pmu::collectors {

enum class OpenFailure {
  kNone,          // opened
  kNotSupported,  // the host or kernel cannot count it (ENOENT, EOPNOTSUPP, ENODEV, encoding)
  kPermission,    // EACCES/EPERM from the kernel's own checks (paranoid, capability, LSM)
  kSeccomp,       // EPERM while a seccomp filter is installed: most likely the filter
  kOther,         // any other errno (EMFILE, EBUSY, EINVAL, ...)
};
// "none", "unsupported", "permission", "seccomp", "error": the `reason` label.
std::string_view ToString(OpenFailure failure);

struct PermissionFacts {
  std::optional<int> paranoid;  // kernel.perf_event_paranoid; nullopt when unreadable
  bool cap_perfmon = false;     // CapEff has CAP_PERFMON (38)
  bool cap_sys_admin = false;   // CapEff has CAP_SYS_ADMIN (21)
  int seccomp = -1;             // Seccomp field: 0 off, 1 strict, 2 filter; -1 unknown
};

// Fills the capability and seccomp fields from the text of /proc/<pid>/status
// (unknown or malformed fields stay at their defaults).
void ParseProcStatus(std::string_view status, PermissionFacts& facts);
// Reads <root>/proc/sys/kernel/perf_event_paranoid and <root>/proc/self/status.
PermissionFacts ReadPermissionFacts(const std::string& root = "/");

// The class of a perf_event_open errno (> 0) given the facts.
OpenFailure ClassifyOpenError(int err, const PermissionFacts& facts);

// One message for a kPermission or kSeccomp failure: what is missing and how
// to change it, e.g. "kernel.perf_event_paranoid is 2: CPU-wide counting
// needs CAP_PERFMON ... or: sysctl -w kernel.perf_event_paranoid=0".
std::string DescribePermissionDenied(int err, const PermissionFacts& facts);

}  // namespace pmu::collectors
