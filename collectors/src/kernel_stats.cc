#include "pmu/collectors/kernel_stats.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <span>

#include "pmu/config/config.h"

namespace pmu::collectors {
namespace {

constexpr size_t kSchedstatCpuFields = 9;

void Diagnose(StatsParseStatus& status, const std::string& path, size_t line,
              const std::string& what) {
  status.diagnostics.push_back(path + ":" + std::to_string(line) + ": " + what);
}

// Reads all of `path` (procfs files report size 0, so read to EOF). Sets
// status.present; a missing file is silent, any other failure a diagnostic.
std::optional<std::string> ReadSource(const std::string& path, StatsParseStatus& status) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error != ENOENT && error != ENOTDIR) {
      Diagnose(status, path, 0, std::string("cannot open: ") + std::strerror(error));
    }
    return std::nullopt;
  }
  std::string text;
  char buffer[8192];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      Diagnose(status, path, 0, std::string("cannot read: ") + std::strerror(error));
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  status.present = true;
  return text;
}

std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t pos = 0;
  while (true) {
    pos = line.find_first_not_of(" \t\r", pos);
    if (pos == std::string_view::npos) break;
    const size_t end = std::min(line.find_first_of(" \t\r", pos), line.size());
    fields.push_back(line.substr(pos, end - pos));
    pos = end;
  }
  return fields;
}

std::optional<uint64_t> ParseCount(std::string_view text) {
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Calls fn(line_number, line, fields) for each line that has fields; lines
// are numbered from 1.
template <typename Fn>
void ForEachRow(std::string_view text, Fn fn) {
  size_t number = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    ++number;
    const std::vector<std::string_view> fields = SplitFields(line);
    if (!fields.empty()) fn(number, line, fields);
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
}

// The value of a "key N" line.
std::optional<uint64_t> KeyedCount(const std::vector<std::string_view>& fields) {
  return fields.size() == 2 ? ParseCount(fields[1]) : std::nullopt;
}

// "cpu12" with prefix "cpu" -> 12; nullopt unless the rest is a plain CPU number.
std::optional<int> ParseCpuLabel(std::string_view label, std::string_view prefix) {
  if (label.size() <= prefix.size() || label.substr(0, prefix.size()) != prefix) {
    return std::nullopt;
  }
  const std::string_view digits = label.substr(prefix.size());
  int cpu = -1;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), cpu);
  if (error != std::errc() || end != digits.data() + digits.size() || cpu < 0 ||
      cpu > config::kMaxCpuNumber) {
    return std::nullopt;
  }
  return cpu;
}

// Parses every field as a count into `out`; on failure returns what was wrong.
std::optional<std::string> ParseCounts(std::span<const std::string_view> fields,
                                       std::vector<uint64_t>& out) {
  out.clear();
  for (std::string_view field : fields) {
    const std::optional<uint64_t> value = ParseCount(field);
    if (!value) return "value '" + std::string(field) + "' is not a non-negative integer";
    out.push_back(*value);
  }
  return std::nullopt;
}

std::string CountMismatch(size_t expected, size_t got, std::string_view what) {
  return "expected " + std::to_string(expected) + " values" + std::string(what) + ", got " +
         std::to_string(got) + (got < expected ? " (truncated line)" : " (extra columns)");
}

// Parses one "cpuN v1 v2 ..." line that needs `min_values` values and takes at
// most `max_values` of them. Returns the CPU or nullopt after a diagnostic.
std::optional<int> ParseCpuRow(std::span<const std::string_view> fields, size_t min_values,
                               size_t max_values, std::vector<uint64_t>& values,
                               const std::string& path, size_t line, StatsParseStatus& status) {
  const std::optional<int> cpu = ParseCpuLabel(fields[0], "cpu");
  if (!cpu) {
    Diagnose(status, path, line, "unknown CPU label '" + std::string(fields[0]) + "'");
    return std::nullopt;
  }
  const size_t count = fields.size() - 1;
  if (count < min_values || count > max_values) {
    Diagnose(status, path, line,
             std::string(fields[0]) + ": " +
                 CountMismatch(count < min_values ? min_values : max_values, count, ""));
    return std::nullopt;
  }
  if (auto error = ParseCounts(fields.subspan(1), values)) {
    Diagnose(status, path, line, std::string(fields[0]) + ": " + *error);
    return std::nullopt;
  }
  return cpu;
}

}  // namespace

std::string UnderRoot(const std::string& root, std::string_view relative) {
  std::string path = root;
  while (!path.empty() && path.back() == '/') path.pop_back();
  path += relative;
  return path;
}

long ClockTicksPerSecond() {
  const long ticks = ::sysconf(_SC_CLK_TCK);
  return ticks > 0 ? ticks : 100;
}

ProcStat ParseProcStat(const std::string& root, long ticks_per_second) {
  ProcStat result;
  const std::string path = UnderRoot(root, "/proc/stat");
  const std::optional<std::string> text = ReadSource(path, result);
  if (!text) return result;
  return ParseProcStatText(*text, path, ticks_per_second);
}

ProcStat ParseProcStatText(std::string_view text, const std::string& path, long ticks_per_second) {
  ProcStat result;
  result.present = true;
  const double tick = 1.0 / static_cast<double>(ticks_per_second);
  std::vector<uint64_t> values;
  ForEachRow(text, [&](size_t line, std::string_view /*content*/,
                       const std::vector<std::string_view>& fields) {
    if (fields[0] == "ctxt") {
      const std::optional<uint64_t> ctxt = KeyedCount(fields);
      if (ctxt) {
        result.context_switches = ctxt;
      } else {
        Diagnose(result, path, line, "ctxt: expected one non-negative integer");
      }
      return;
    }
    // "cpu" alone is the all-CPU sum; other keys (intr, btime, ...) are not ours.
    if (fields[0].substr(0, 3) != "cpu" || fields[0] == "cpu") return;
    // Kernels append new columns at the end; only the first ten are known.
    const std::span<const std::string_view> known(fields.data(),
                                                  std::min(fields.size(), kCpuModeCount + 1));
    const std::optional<int> cpu =
        ParseCpuRow(known, kCpuModeCount, kCpuModeCount, values, path, line, result);
    if (!cpu) return;
    CpuTimes times;
    times.cpu = *cpu;
    for (size_t i = 0; i < kCpuModeCount; ++i) {
      times.ticks[i] = values[i];
      times.seconds[i] = static_cast<double>(values[i]) * tick;
    }
    result.cpus.push_back(times);
  });
  return result;
}

Softirqs ParseSoftirqs(const std::string& root) {
  Softirqs missing;
  const std::string path = UnderRoot(root, "/proc/softirqs");
  const std::optional<std::string> text = ReadSource(path, missing);
  return text ? ParseSoftirqsText(*text, path) : missing;
}

Softirqs ParseSoftirqsText(std::string_view text, const std::string& path) {
  Softirqs result;
  result.present = true;
  bool header_seen = false;
  bool header_ok = false;
  std::vector<uint64_t> values;
  ForEachRow(text, [&](size_t line, std::string_view /*content*/,
                       const std::vector<std::string_view>& fields) {
    if (!header_seen) {
      header_seen = true;
      for (std::string_view label : fields) {
        const std::optional<int> cpu = ParseCpuLabel(label, "CPU");
        if (!cpu) {
          Diagnose(result, path, line,
                   "header: unknown CPU label '" + std::string(label) +
                       "' (expected CPU0 CPU1 ...); file ignored");
          result.cpus.clear();
          return;
        }
        result.cpus.push_back(CpuSoftirqs{*cpu, {}});
      }
      header_ok = true;
      return;
    }
    if (!header_ok) return;  // already diagnosed
    const std::string_view label = fields[0];
    if (label.size() < 2 || label.back() != ':') {
      Diagnose(result, path, line, "expected 'TYPE:' first, got '" + std::string(label) + "'");
      return;
    }
    const std::string type(label.substr(0, label.size() - 1));
    const size_t count = fields.size() - 1;
    if (count != result.cpus.size()) {
      Diagnose(result, path, line,
               type + ": " + CountMismatch(result.cpus.size(), count, " (one per header CPU)"));
      return;
    }
    if (auto error = ParseCounts(std::span(fields).subspan(1), values)) {
      Diagnose(result, path, line, type + ": " + *error);
      return;
    }
    for (size_t i = 0; i < count; ++i) result.cpus[i].counts.emplace_back(type, values[i]);
  });
  return result;
}

bool IsKnownSchedstatVersion(int version) { return version >= 15 && version <= 17; }

Schedstat ParseSchedstat(const std::string& root) {
  Schedstat missing;
  const std::string path = UnderRoot(root, "/proc/schedstat");
  const std::optional<std::string> text = ReadSource(path, missing);
  return text ? ParseSchedstatText(*text, path) : missing;
}

Schedstat ParseSchedstatText(std::string_view text, const std::string& path) {
  Schedstat result;
  result.present = true;
  bool version_ok = false;
  std::vector<uint64_t> values;
  ForEachRow(text, [&](size_t line, std::string_view content,
                       const std::vector<std::string_view>& fields) {
    if (fields[0] == "version") {
      const std::optional<uint64_t> version = KeyedCount(fields);
      result.version = version && *version < 1000 ? static_cast<int>(*version) : 0;
      version_ok = IsKnownSchedstatVersion(result.version);
      if (!version_ok) {
        Diagnose(result, path, line,
                 "unsupported schedstat version '" + std::string(content) +
                     "' (known: 15, 16, 17); no run-queue statistics read");
      }
      return;
    }
    if (!version_ok || fields[0].substr(0, 3) != "cpu") return;  // domainN, timestamp
    const std::optional<int> cpu =
        ParseCpuRow(std::span<const std::string_view>(fields), kSchedstatCpuFields,
                    kSchedstatCpuFields, values, path, line, result);
    if (!cpu) return;
    result.cpus.push_back(CpuSchedstat{*cpu, values[6], values[7], values[8]});
  });
  if (result.version == 0 && result.diagnostics.empty()) {
    Diagnose(result, path, 1, "no 'version N' line; no run-queue statistics read");
  }
  return result;
}

Cpufreq ParseCpufreq(const std::string& root, const std::vector<int>& cpus) {
  Cpufreq result;
  for (int cpu : cpus) {
    const std::string path = UnderRoot(
        root, "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/cpufreq/scaling_cur_freq");
    StatsParseStatus file;
    const std::optional<std::string> text = ReadSource(path, file);
    result.present = result.present || file.present;
    for (std::string& diagnostic : file.diagnostics) {
      result.diagnostics.push_back(std::move(diagnostic));
    }
    if (!text) continue;
    const std::string_view first_line = std::string_view(*text).substr(0, text->find('\n'));
    const std::vector<std::string_view> fields = SplitFields(first_line);
    const std::optional<uint64_t> khz = fields.size() == 1 ? ParseCount(fields[0]) : std::nullopt;
    if (!khz) {
      Diagnose(result, path, 1,
               "expected one frequency in kHz, got '" + std::string(first_line) + "'");
      continue;
    }
    result.cpus.push_back(CpuFrequency{cpu, static_cast<double>(*khz) * 1000.0});
  }
  return result;
}

}  // namespace pmu::collectors
