// Typed, validated configuration of pmu-exporter.
//
// The TOML file is the public interface. Parsing is all-or-nothing: either a
// fully validated Config comes back or a ConfigError is thrown that names the
// file, line, column and key. Nothing here opens any file other than the
// config itself; facts about the host (which CPUs exist) come in through
// ParseContext so the daemon can take them from collectors/ and tests can fake
// them.
//
// Schema (every table and key is optional; absent keys take the defaults of
// the structs below):
//   [exporter] listen = "HOST:PORT" (IPv4 literal or [IPv6] literal, never a
//              host name; port 0 = any free port), metrics_path = "/..."
//              (must start with '/'; only URI path characters: no
//              spaces, control characters, '?', '#', quotes or '<>'),
//              port_file = "" (none)
//   [sampling] interval = duration string (see ParseDuration; 1ms to 1h),
//              cpus = "all"
//              or a CPU list (see ParseCpuList) of CPUs that exist
//   [log]      level = "trace" | "debug" | "info" | "warn" | "error"
//   [log]      target = "auto" | "stderr" | "journald"
//   [web]      tls_cert_file, tls_key_file (both or neither), max_connections,
//              max_request_bytes, request_timeout, idle_timeout (1ms to
//              24h each);
//              [[web.users]] name, password_hash (crypt(3) hash, checked
//              with crypt_checksalt)
//   [stats]    proc_stat, softirqs, schedstat, cpufreq = booleans (default
//              true): which per-CPU kernel statistics sources are exported
//   [[events]] name = label value (required, unique, [A-Za-z0-9_.:-]+),
//              event = event string (required, non-empty; its meaning is
//              checked by collectors::ValidateEventNames, which knows the host),
//              group = "" (events sharing a non-empty group are one perf group)
//   [exporter] max_series = integer (default 50000): the most series the
//              configuration may produce (checked by the daemon, which knows
//              the host's CPUs and supported events)
//   [[derived]] name (required, unique, [a-z_][a-z0-9_]* without the
//              suffixes _bucket, _sum, _count, _last, _total), numerator
//              (required) and denominator (required unless per_second): an
//              input name or a non-empty array of input names that are
//              summed; scope = "host" | "cpu"; buckets = strictly increasing
//              positive numbers; per_second = false. An input is an
//              [[events]] name or a statistics input (kStatInputs); one
//              metric uses either kind, never both. See DerivedSpec.
//   [cgroups]  per-cgroup attribution (attribution/): enabled = false,
//              mode = "auto" | "bpf" | "perf", root = "" (detect), include and
//              exclude = arrays of glob patterns over paths relative to root
//              ('*' and '?' within one level, '**' across levels), max =
//              1000, rescan = duration, events = [[events]] names (empty: all).
//              See CgroupsConfig.
// Derived list: no `derived` key = the daemon's built-in derived metrics
// (Config::derived is nullopt); `derived = []` = none at all.
// Event list: a file with no `events` key at all uses the built-in default
// list (the one DefaultConfig() has), so a file may tune only, say, the
// interval. An explicitly empty list (`events = []`) is an error.
// Unknown keys at any level are errors (with a "did you mean" suggestion when
// a known key is within edit distance 2), so typos never pass silently. The
// suggestion costs O(length x 5) time and O(length) memory per candidate,
// whatever the length of the unknown name.
//
// Error positions: a bad value points at the value, an unknown key at the key,
// a missing required key at its table, a TOML syntax error at the place the
// TOML parser reports. Keys are dotted paths; array entries are 1-based, as
// an editor counts them: "events[1].name" is the first [[events]] entry.
//
// Thread safety: all functions are reentrant; a Config is a plain value.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pmu::config {

// Thrown for every invalid input. what() reads
//   "<file>:<line>:<column>: <key>: <message>"
// line/column are 1-based; 0 when the problem has no position (e.g. the file
// could not be read), in which case they are left out of what(). key is empty
// when the problem belongs to no key (unreadable file, TOML syntax error); it
// is left out of what() then too.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, int line, int column, std::string key, std::string message);

  const std::string& file() const { return file_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& key() const { return key_; }          // dotted, e.g. "events[2].name"
  const std::string& message() const { return message_; }  // without the position prefix

 private:
  std::string file_;
  int line_;
  int column_;
  std::string key_;
  std::string message_;
};

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };
std::string_view ToString(LogLevel level);

// Where log lines go. kAuto: the journal when stderr is connected to it
// (JOURNAL_STREAM names stderr's device and inode), else stderr.
enum class LogTarget { kAuto, kStderr, kJournald };
std::string_view ToString(LogTarget target);

struct ListenAddress {
  std::string host;   // IPv4 literal ("127.0.0.1") or IPv6 literal without brackets ("::1")
  uint16_t port = 0;  // 0: the kernel picks a free port
  bool ipv6 = false;
  // "127.0.0.1:9842" or "[::1]:9842"
  std::string ToString() const;
  bool operator==(const ListenAddress&) const = default;
};

struct EventSpec {
  std::string name;   // label value exported; unique; [A-Za-z0-9_.:-]+
  std::string event;  // event string (collectors/event_source.h: sysfs, tracepoint, raw,
                      // perf software or libpfm4 name)
  std::string group;  // "" = counted alone
  int line = 0;       // where the entry starts in the file (0 for built-in)
  int column = 0;
  int event_line = 0;  // where the `event` value is (0 for built-in)
  int event_column = 0;
  bool operator==(const EventSpec& o) const {
    return name == o.name && event == o.event && group == o.group;
  }
};

struct ExporterConfig {
  ListenAddress listen{"127.0.0.1", 9842, false};
  std::string metrics_path = "/metrics";
  std::string port_file;   // "" = none
  int max_series = 50000;  // series the configuration may produce; more refuse to start
  bool operator==(const ExporterConfig&) const = default;
};

struct SamplingConfig {
  // 100 ms: fine enough for the per-interval distributions; its cost is in
  // bench/results.
  std::chrono::nanoseconds interval = std::chrono::milliseconds(100);
  bool all_cpus = true;
  std::vector<int> cpus;  // sorted, unique; empty when all_cpus
  // An event counting less than this fraction of its enabled time (the PMU
  // is multiplexed) is warned about, rate-limited. (0, 1].
  double min_running_ratio = 0.5;
  bool operator==(const SamplingConfig&) const = default;
};

struct LogConfig {
  LogLevel level = LogLevel::kInfo;
  LogTarget target = LogTarget::kAuto;
  bool operator==(const LogConfig&) const = default;
};

// Per-CPU kernel statistics sources (collectors/kernel_stats.h). A source
// that is enabled but absent on the host is reported, not an error.
struct StatsConfig {
  bool proc_stat = true;  // /proc/stat: CPU time per mode
  bool softirqs = true;   // /proc/softirqs
  bool schedstat = true;  // /proc/schedstat: run-queue wait, running time
  bool cpufreq = true;    // /sys/devices/system/cpu/cpuN/cpufreq/scaling_cur_freq
  bool operator==(const StatsConfig&) const = default;
};

// A user allowed to scrape with HTTP basic authentication.
struct WebUser {
  std::string name;           // non-empty, no ':'; unique
  std::string password_hash;  // crypt(3) hash ($y$ yescrypt, $2b$ bcrypt, $6$ sha512crypt, ...)
  bool operator==(const WebUser&) const = default;
};

// The /metrics endpoint's transport security and limits.
struct WebConfig {
  std::string tls_cert_file;  // both set: HTTPS only; both empty: plain HTTP
  std::string tls_key_file;
  std::vector<WebUser> users;    // empty: no authentication
  int max_connections = 512;     // concurrent connections; more are closed at once
  int max_request_bytes = 8192;  // request line + headers
  std::chrono::nanoseconds request_timeout = std::chrono::seconds(10);
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(60);  // keep-alive
  bool operator==(const WebConfig&) const = default;
};

// Where a derived metric's value is computed: one value per interval for the
// whole host (inputs summed over CPUs), or one per CPU (label `cpu`).
enum class DerivedScope { kHost, kCpu };
std::string_view ToString(DerivedScope scope);

// Derived-metric inputs that are per-CPU statistics rather than events. Their
// names contain '/', which an event name cannot, so they never collide.
//   proc_stat/busy_seconds   user+nice+system+irq+softirq+steal from /proc/stat
//                            (guest and guest_nice are inside user and nice)
//   proc_stat/total_seconds  busy plus idle and iowait
inline constexpr std::string_view kProcStatBusySeconds = "proc_stat/busy_seconds";
inline constexpr std::string_view kProcStatTotalSeconds = "proc_stat/total_seconds";
inline constexpr std::string_view kStatInputs[] = {kProcStatBusySeconds, kProcStatTotalSeconds};
bool IsStatInput(std::string_view name);

// One [[derived]] entry: per sampling interval,
//   value = sum(numerator deltas) / sum(denominator deltas)
// or, with per_second, sum(numerator deltas) / interval seconds.
// A /proc/stat metric's window: /proc/stat moves in ticks of 10 ms (USER_HZ
// 100), so a window of W holds W / 10 ms ticks per CPU and its values are
// multiples of 10 ms / W. 1 s by default: values to 0.01, and /proc/stat
// (whose generation walks every IRQ: about 40 us here) read once a second
// rather than ten times (bench/results).
inline constexpr std::chrono::nanoseconds kDefaultStatWindow = std::chrono::seconds(1);
inline constexpr std::chrono::nanoseconds kMinStatWindow = std::chrono::milliseconds(100);
inline constexpr std::chrono::nanoseconds kMaxStatWindow = std::chrono::minutes(1);

struct DerivedSpec {
  std::string name;  // [a-z_][a-z0-9_]*, not ending in _bucket/_sum/_count/_last/_total; unique
  std::vector<std::string> numerator;    // non-empty; event names or stat inputs, no repeats
  std::vector<std::string> denominator;  // empty exactly when per_second
  DerivedScope scope = DerivedScope::kHost;
  bool per_second = false;
  std::vector<double> buckets;  // strictly increasing, positive, finite; empty = default
  // /proc/stat inputs only: the length of the windows a value is taken over
  // (kMinStatWindow..kMaxStatWindow). Event metrics take one per interval.
  std::chrono::nanoseconds window = kDefaultStatWindow;
  int line = 0;  // where the entry starts in the file (0 for built-in)
  int column = 0;
  bool operator==(const DerivedSpec& o) const {
    return name == o.name && numerator == o.numerator && denominator == o.denominator &&
           scope == o.scope && per_second == o.per_second && buckets == o.buckets &&
           window == o.window;
  }
};

// [cgroups]: counters per cgroup (attribution/). Paths are relative to the
// cgroup v2 root and start with '/': "/system.slice/ssh.service".
enum class CgroupMode { kAuto, kBpf, kPerf };
std::string_view ToString(CgroupMode mode);

struct CgroupsConfig {
  bool enabled = false;
  CgroupMode mode = CgroupMode::kAuto;
  std::string root;  // "" = detect the cgroup v2 mount
  std::vector<std::string> include{"/system.slice/*.service", "/kubepods.slice/**"};
  std::vector<std::string> exclude;
  int max = 1000;  // matching cgroups counted (first by path); [1, 100000]
  std::chrono::nanoseconds rescan = std::chrono::seconds(10);
  std::vector<std::string> events;  // [[events]] names; empty = every supported event
  bool operator==(const CgroupsConfig&) const = default;
};

struct Config {
  std::string source = "<built-in default>";  // path of the file, or the built-in marker
  ExporterConfig exporter;
  SamplingConfig sampling;
  LogConfig log;
  StatsConfig stats;
  WebConfig web;
  std::vector<EventSpec> events;
  // nullopt: no `derived` key, the daemon picks its built-in derived metrics
  // from the events this host supports (daemon/derived.h); a value, even an
  // empty one, is exactly what the file lists.
  std::optional<std::vector<DerivedSpec>> derived;
  CgroupsConfig cgroups;

  // Equality ignores `source` and event and derived positions.
  bool operator==(const Config& o) const {
    return exporter == o.exporter && sampling == o.sampling && log == o.log && stats == o.stats &&
           web == o.web && events == o.events && derived == o.derived && cgroups == o.cgroups;
  }
};

// Host facts used for validation.
struct ParseContext {
  // CPUs that exist on this host (/sys/devices/system/cpu/possible). Empty:
  // do not check CPU numbers against the host.
  std::vector<int> possible_cpus;
};

// The built-in default: hardware events cycles, instructions, cache-misses,
// branch-misses and software events cpu-clock, context-switches,
// cpu-migrations, page-faults; all CPUs; 100 ms; 127.0.0.1:9842.
Config DefaultConfig();

// Parses TOML text. `source_name` is used in errors and stored in Config::source.
Config ParseConfig(std::string_view toml_text, const std::string& source_name,
                   const ParseContext& context);

// Reads and parses a file. Only a regular file of at most kMaxConfigBytes is
// read: a FIFO, a device (/dev/zero), a directory or a larger file is refused
// at once without blocking or reading it. An unreadable or refused file is a
// ConfigError with line 0.
inline constexpr size_t kMaxConfigBytes = 1 << 20;  // 1 MiB
Config LoadConfigFile(const std::string& path, const ParseContext& context);

// Bounds of every duration the configuration accepts (inclusive). Values
// outside them are ConfigErrors naming the bounds, so no deadline or
// schedule computed from them can overflow 64-bit nanoseconds.
//   [sampling] interval                     1ms .. 1h
//   [web] request_timeout, idle_timeout     1ms .. 24h
inline constexpr std::chrono::nanoseconds kMinInterval = std::chrono::milliseconds(1);
inline constexpr std::chrono::nanoseconds kMaxInterval = std::chrono::hours(1);
inline constexpr std::chrono::nanoseconds kMinTimeout = std::chrono::milliseconds(1);
inline constexpr std::chrono::nanoseconds kMaxTimeout = std::chrono::hours(24);

// The offset of the first byte of `text` that is not part of well-formed
// UTF-8 (overlong forms, surrogates and code points above U+10FFFF are
// ill-formed), or npos. ParseConfig rejects such text before the TOML parser
// sees it (Debian's toml++ 3.3.0 reaches undefined behaviour on some).
size_t FindInvalidUtf8(std::string_view text);

// "10ms", "250ms", "1s", "1.5s", "1m", "2h", "500us", "100ns". A number
// (decimal fraction allowed) directly followed by a unit: ns, us, ms, s, m, h.
// Throws std::invalid_argument with a reason for unparsable or non-positive
// input, for a missing unit, for fractions finer than 1ns and on overflow.
std::chrono::nanoseconds ParseDuration(std::string_view text);
// "100ms", "1s", "1500ms": the largest unit that represents `d` exactly, so
// ParseDuration(FormatDuration(d)) == d for every positive d.
std::string FormatDuration(std::chrono::nanoseconds d);

// "0-3,8" -> {0,1,2,3,8}; sorted, unique; spaces around entries are allowed.
// Throws std::invalid_argument for empty lists or entries, reversed ranges,
// non-numbers, negative numbers and numbers above kMaxCpuNumber.
inline constexpr int kMaxCpuNumber = 65535;
std::vector<int> ParseCpuList(std::string_view text);
std::string FormatCpuList(const std::vector<int>& cpus);  // inverse: "0-3,8"

// "127.0.0.1:9842", "[::1]:0". The host must be an IP literal (host names are
// not resolved); IPv6 needs brackets. Throws std::invalid_argument with a
// reason.
ListenAddress ParseListenAddress(std::string_view text);

// One line for --check-config. Groups are counted as perf groups: each
// distinct non-empty group name is one, each ungrouped event is its own.
// E.g. (one line, wrapped here):
//   config OK: /etc/pmu-exporter/config.toml: 8 events in 8 groups, cpus all,
//   interval 100ms, listen 127.0.0.1:9842/metrics
std::string Summary(const Config& config);

}  // namespace pmu::config
