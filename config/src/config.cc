// TOML (toml++) -> validated Config. toml++ stays inside this file: the public
// header shows only plain values.
#include "pmu/config/config.h"

#include <crypt.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pmu::config {
namespace {

constexpr std::array<std::string_view, 8> kRootKeys{"exporter", "sampling", "log",     "stats",
                                                    "web",      "events",   "derived", "cgroups"};
constexpr std::array<std::string_view, 4> kExporterKeys{"listen", "metrics_path", "port_file",
                                                        "max_series"};
constexpr std::array<std::string_view, 3> kSamplingKeys{"interval", "cpus", "min_running_ratio"};
constexpr std::array<std::string_view, 2> kLogKeys{"level", "target"};
constexpr std::array<std::string_view, 7> kWebKeys{
    "tls_cert_file",     "tls_key_file",    "users",       "max_connections",
    "max_request_bytes", "request_timeout", "idle_timeout"};
constexpr std::array<std::string_view, 2> kWebUserKeys{"name", "password_hash"};
constexpr std::array<std::pair<LogTarget, std::string_view>, 3> kLogTargets{{
    {LogTarget::kAuto, "auto"},
    {LogTarget::kStderr, "stderr"},
    {LogTarget::kJournald, "journald"},
}};
constexpr std::array<std::string_view, 4> kStatsKeys{"proc_stat", "softirqs", "schedstat",
                                                     "cpufreq"};
constexpr std::array<std::string_view, 3> kEventKeys{"name", "event", "group"};
constexpr std::array<std::string_view, 7> kDerivedKeys{
    "name", "numerator", "denominator", "scope", "buckets", "per_second", "window"};
// pmu_derived_<name> is a histogram (_bucket, _sum, _count) with a _last
// gauge beside it; promtool wants no histogram named _total.
constexpr std::array<std::string_view, 5> kReservedDerivedSuffixes{"_bucket", "_sum", "_count",
                                                                   "_last", "_total"};
constexpr std::array<std::pair<DerivedScope, std::string_view>, 2> kDerivedScopes{{
    {DerivedScope::kHost, "host"},
    {DerivedScope::kCpu, "cpu"},
}};

constexpr std::array<std::string_view, 8> kCgroupsKeys{"enabled", "mode", "root",   "include",
                                                       "exclude", "max",  "rescan", "events"};
constexpr std::array<std::pair<CgroupMode, std::string_view>, 3> kCgroupModes{{
    {CgroupMode::kAuto, "auto"},
    {CgroupMode::kBpf, "bpf"},
    {CgroupMode::kPerf, "perf"},
}};

constexpr std::array<std::string_view, 8> kDefaultEvents{
    "cycles",    "instructions",     "cache-misses",   "branch-misses",
    "cpu-clock", "context-switches", "cpu-migrations", "page-faults"};

constexpr std::array<std::pair<LogLevel, std::string_view>, 5> kLogLevels{{
    {LogLevel::kTrace, "trace"},
    {LogLevel::kDebug, "debug"},
    {LogLevel::kInfo, "info"},
    {LogLevel::kWarn, "warn"},
    {LogLevel::kError, "error"},
}};

std::string FormatWhat(const std::string& file, int line, int column, const std::string& key,
                       const std::string& message) {
  std::string what = file;
  if (line > 0) what += ":" + std::to_string(line) + ":" + std::to_string(column);
  what += ": ";
  if (!key.empty()) what += key + ": ";
  return what + message;
}

// Optimal string alignment distance (Levenshtein plus adjacent transpositions,
// so "lsiten" is one edit from "listen"), capped: any distance above `cap`
// comes back as cap + 1. Only the diagonal band |i - j| <= cap can hold a
// distance within the cap, so the cost is O(|a| x (2 cap + 1)) time and
// O(|b|) memory, whatever the lengths (a 20,000-character name once took
// gigabytes with the full matrix).
size_t EditDistance(std::string_view a, std::string_view b, size_t cap) {
  const size_t too_far = cap + 1;
  const size_t length_gap = a.size() > b.size() ? a.size() - b.size() : b.size() - a.size();
  if (length_gap > cap) return too_far;
  // Three rolling rows: i - 2 (for transpositions), i - 1 and i.
  std::vector<size_t> before(b.size() + 1, too_far);
  std::vector<size_t> previous(b.size() + 1, too_far);
  std::vector<size_t> current(b.size() + 1, too_far);
  for (size_t j = 0; j <= std::min(b.size(), cap); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    std::fill(current.begin(), current.end(), too_far);
    const size_t from = i > cap ? i - cap : 0;
    const size_t to = std::min(b.size(), i + cap);
    size_t row_best = too_far;
    for (size_t j = from; j <= to; ++j) {
      size_t d = too_far;
      if (j == 0) {
        d = i;
      } else {
        const size_t substitution = a[i - 1] == b[j - 1] ? 0 : 1;
        d = std::min({previous[j] + 1, current[j - 1] + 1, previous[j - 1] + substitution});
        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
          d = std::min(d, before[j - 2] + 1);
        }
      }
      current[j] = std::min(d, too_far);
      row_best = std::min(row_best, current[j]);
    }
    if (row_best > cap) return too_far;  // every path already costs more
    std::swap(before, previous);
    std::swap(previous, current);
  }
  return std::min(previous[b.size()], too_far);
}

// A name as quoted in a message: long ones are cut (a message repeats no
// 20,000-character key).
std::string Shortened(std::string_view name) {
  constexpr size_t kMaxQuoted = 64;
  if (name.size() <= kMaxQuoted) return std::string(name);
  return std::string(name.substr(0, kMaxQuoted)) + "... (" + std::to_string(name.size()) +
         " bytes)";
}

// Suggests the closest known key within edit distance 2, unless that would
// rewrite half of it or more ("foo" is 2 edits from "log" but no typo of it).
std::string UnknownKeyMessage(std::string_view key, std::span<const std::string_view> known) {
  constexpr size_t kMaxSuggestionDistance = 2;
  std::string_view best;
  size_t best_distance = kMaxSuggestionDistance + 1;
  for (std::string_view candidate : known) {
    const size_t distance = EditDistance(key, candidate, kMaxSuggestionDistance);
    if (distance < best_distance && 2 * distance < candidate.size()) {
      best = candidate;
      best_distance = distance;
    }
  }
  std::string message = "unknown key '" + Shortened(key) + "'";
  if (!best.empty()) return message + " (did you mean '" + Shortened(best) + "'?)";
  message += " (known keys: ";
  for (size_t i = 0; i < known.size(); ++i) {
    message += (i == 0 ? "" : ", ") + Shortened(known[i]);
  }
  return message + ")";
}

std::string_view TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::none:
      return "nothing";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
  }
  return "an unknown type";
}

// A full crypt(3) hash with a method libcrypt enables ("*" and "!" locked
// entries and bare salts are refused).
bool IsCryptHash(const std::string& hash) {
  if (hash.size() < 13 || hash.front() != '$') return false;
  return crypt_checksalt(hash.c_str()) == CRYPT_SALT_OK;
}

bool IsEventNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == ':' || c == '-';
}

// [a-z_][a-z0-9_]*: the name becomes part of a metric name.
bool IsDerivedName(std::string_view name) {
  if (name.empty() || (name.front() >= '0' && name.front() <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// A character RFC 3986 allows in a URI path (pchar or '/'): what a scraper
// can send unescaped and an HTML attribute can hold without escaping.
bool IsPathChar(char c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("-._~!$&'()*+,;=:@/%").find(c) != std::string_view::npos;
}

// "'x'" for a printable character, "byte 0x00" for anything else.
std::string DescribeByte(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte > 0x20 && byte < 0x7f) return "'" + std::string(1, c) + "'";
  if (byte == 0x20) return "spaces";
  char hex[16];
  std::snprintf(hex, sizeof(hex), "byte 0x%02x", byte);
  return hex;
}

std::string JoinKey(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

// Walks a parsed document; every check throws a ConfigError positioned at the
// offending node.
class Validator {
 public:
  Validator(const std::string& source, const ParseContext& context)
      : source_(source), context_(context) {}

  Config Run(const toml::table& root) {
    Config config;
    config.source = source_;
    RejectUnknownKeys(root, "", kRootKeys);
    if (const toml::table* exporter = Table(root, "", "exporter")) {
      ReadExporter(*exporter, config.exporter);
    }
    if (const toml::table* sampling = Table(root, "", "sampling")) {
      ReadSampling(*sampling, config.sampling);
    }
    if (const toml::table* log = Table(root, "", "log")) ReadLog(*log, config.log);
    if (const toml::table* stats = Table(root, "", "stats")) ReadStats(*stats, config.stats);
    if (const toml::table* web = Table(root, "", "web")) ReadWeb(*web, config.web);
    if (const toml::node* events = root.get("events")) {
      config.events = ReadEvents(*events);
    } else {
      config.events = DefaultConfig().events;
    }
    // After the events: inputs are checked against the final event list,
    // wherever the tables stand in the file.
    if (const toml::node* derived = root.get("derived")) {
      config.derived = ReadDerivedList(*derived, config.events);
    }
    if (const toml::table* cgroups = Table(root, "", "cgroups")) {
      ReadCgroups(*cgroups, config.events, config.cgroups);
    }
    return config;
  }

 private:
  [[noreturn]] void Fail(const toml::source_region& where, const std::string& key,
                         const std::string& message) const {
    throw ConfigError(source_, static_cast<int>(where.begin.line),
                      static_cast<int>(where.begin.column), key, message);
  }

  void RejectUnknownKeys(const toml::table& table, const std::string& path,
                         std::span<const std::string_view> known) const {
    for (auto&& [key, node] : table) {
      if (std::find(known.begin(), known.end(), key.str()) == known.end()) {
        Fail(key.source(), JoinKey(path, key.str()), UnknownKeyMessage(key.str(), known));
      }
    }
  }

  // The sub-table `name` of `parent`, nullptr when absent.
  const toml::table* Table(const toml::table& parent, const std::string& path,
                           std::string_view name) const {
    const toml::node* node = parent.get(name);
    if (node == nullptr) return nullptr;
    if (!node->is_table()) {
      Fail(node->source(), JoinKey(path, name),
           "expected a table, got " + std::string(TypeName(node->type())));
    }
    return node->as_table();
  }

  // The string value `name` of `table`, nullptr when absent.
  const toml::value<std::string>* String(const toml::table& table, const std::string& path,
                                         std::string_view name, std::string_view example) const {
    const toml::node* node = table.get(name);
    if (node == nullptr) return nullptr;
    if (!node->is_string()) {
      Fail(node->source(), JoinKey(path, name),
           "expected a string like " + std::string(example) + ", got " +
               std::string(TypeName(node->type())));
    }
    return node->as_string();
  }

  // Runs `parse` on the string value; its std::invalid_argument becomes a
  // ConfigError at the value.
  template <typename Parse>
  auto ParseValue(const toml::value<std::string>& value, const std::string& key,
                  Parse parse) const {
    try {
      return parse(value.get());
    } catch (const std::invalid_argument& e) {
      Fail(value.source(), key, e.what());
    }
  }

  void ReadExporter(const toml::table& table, ExporterConfig& out) const {
    const std::string path = "exporter";
    RejectUnknownKeys(table, path, kExporterKeys);
    if (const auto* listen = String(table, path, "listen", "\"127.0.0.1:9842\"")) {
      out.listen = ParseValue(*listen, "exporter.listen", ParseListenAddress);
    }
    if (const auto* metrics_path = String(table, path, "metrics_path", "\"/metrics\"")) {
      const std::string& value = metrics_path->get();
      if (value.empty() || value.front() != '/') {
        Fail(metrics_path->source(), "exporter.metrics_path",
             "metrics_path '" + value + "' must start with '/', e.g. \"/metrics\"");
      }
      const auto bad = std::find_if_not(value.begin(), value.end(), IsPathChar);
      if (bad != value.end()) {
        Fail(metrics_path->source(), "exporter.metrics_path",
             "metrics_path must not contain " + DescribeByte(*bad) +
                 " (allowed: letters, digits and -._~!$&'()*+,;=:@/%; no spaces, control "
                 "characters, '?' or '#')");
      }
      out.metrics_path = value;
    }
    if (const auto* port_file = String(table, path, "port_file", "\"/run/pmu-exporter.port\"")) {
      out.port_file = port_file->get();
    }
    Integer(table, path, "max_series", 1, 100'000'000, out.max_series);
  }

  void ReadSampling(const toml::table& table, SamplingConfig& out) const {
    const std::string path = "sampling";
    RejectUnknownKeys(table, path, kSamplingKeys);
    if (const toml::node* ratio = table.get("min_running_ratio")) {
      if (!ratio->is_number()) {
        Fail(ratio->source(), "sampling.min_running_ratio",
             "expected a number like 0.5, got " + std::string(TypeName(ratio->type())));
      }
      const double value = ratio->is_integer() ? static_cast<double>(ratio->as_integer()->get())
                                               : ratio->as_floating_point()->get();
      if (!(value > 0 && value <= 1)) {
        Fail(ratio->source(), "sampling.min_running_ratio",
             "min_running_ratio must be in (0, 1], e.g. 0.5");
      }
      out.min_running_ratio = value;
    }
    Duration(table, path, "interval", "\"1s\"", kMinInterval, kMaxInterval, out.interval);
    if (const auto* cpus = String(table, path, "cpus", "\"all\" or \"0-3,8\"")) {
      if (cpus->get() == "all") {
        out.all_cpus = true;
        out.cpus.clear();
        return;
      }
      out.all_cpus = false;
      out.cpus = ParseValue(*cpus, "sampling.cpus", ParseCpuList);
      const std::vector<int>& possible = context_.possible_cpus;
      if (possible.empty()) return;
      for (int cpu : out.cpus) {
        if (std::find(possible.begin(), possible.end(), cpu) == possible.end()) {
          Fail(cpus->source(), "sampling.cpus",
               "CPU " + std::to_string(cpu) +
                   " does not exist on this host (possible CPUs: " + FormatCpuList(possible) + ")");
        }
      }
    }
  }

  void ReadLog(const toml::table& table, LogConfig& out) const {
    const std::string path = "log";
    RejectUnknownKeys(table, path, kLogKeys);
    if (const auto* level = String(table, path, "level", "\"info\"")) {
      out.level =
          Choice(*level, "log.level", "log level", kLogLevels, "trace, debug, info, warn or error");
    }
    if (const auto* target = String(table, path, "target", "\"auto\"")) {
      out.target =
          Choice(*target, "log.target", "log target", kLogTargets, "auto, stderr or journald");
    }
  }

  // The enumerator whose name equals the string value.
  template <typename Enum, size_t N>
  Enum Choice(const toml::value<std::string>& value, const std::string& key,
              const std::string& noun,
              const std::array<std::pair<Enum, std::string_view>, N>& choices,
              const std::string& expected) const {
    for (const auto& [enumerator, name] : choices) {
      if (value.get() == name) return enumerator;
    }
    Fail(value.source(), key,
         "unknown " + noun + " '" + value.get() + "' (expected " + expected + ")");
  }

  // A duration string `name` in [lo, hi] stored into `out`; left alone when
  // absent. Out of range: an error at the value naming both bounds.
  void Duration(const toml::table& table, const std::string& path, std::string_view name,
                std::string_view example, std::chrono::nanoseconds lo, std::chrono::nanoseconds hi,
                std::chrono::nanoseconds& out) const {
    const auto* value = String(table, path, name, example);
    if (value == nullptr) return;
    const std::string key = JoinKey(path, name);
    const std::chrono::nanoseconds parsed = ParseValue(*value, key, ParseDuration);
    if (parsed < lo || parsed > hi) {
      Fail(value->source(), key,
           std::string(name) + " '" + value->get() + "' is out of range [" + FormatDuration(lo) +
               ", " + FormatDuration(hi) + "]");
    }
    out = parsed;
  }

  // An integer value `name` in [lo, hi] stored into `out`; left alone when absent.
  void Integer(const toml::table& table, const std::string& path, std::string_view name, int64_t lo,
               int64_t hi, int& out) const {
    const toml::node* node = table.get(name);
    if (node == nullptr) return;
    if (!node->is_integer()) {
      Fail(node->source(), JoinKey(path, name),
           "expected an integer, got " + std::string(TypeName(node->type())));
    }
    const int64_t value = node->as_integer()->get();
    if (value < lo || value > hi) {
      Fail(node->source(), JoinKey(path, name),
           std::to_string(value) + " is out of range [" + std::to_string(lo) + ", " +
               std::to_string(hi) + "]");
    }
    out = static_cast<int>(value);
  }

  void ReadWeb(const toml::table& table, WebConfig& out) const {
    const std::string path = "web";
    RejectUnknownKeys(table, path, kWebKeys);
    const auto* cert = String(table, path, "tls_cert_file", "\"/etc/pmu-exporter/tls.crt\"");
    const auto* key = String(table, path, "tls_key_file", "\"/etc/pmu-exporter/tls.key\"");
    if (cert != nullptr) out.tls_cert_file = cert->get();
    if (key != nullptr) out.tls_key_file = key->get();
    if (out.tls_cert_file.empty() != out.tls_key_file.empty()) {
      const auto& where = cert != nullptr && !out.tls_cert_file.empty() ? cert->source()
                          : key != nullptr                              ? key->source()
                                                                        : table.source();
      Fail(where, out.tls_cert_file.empty() ? "web.tls_cert_file" : "web.tls_key_file",
           "TLS needs both tls_cert_file and tls_key_file (or neither for plain HTTP)");
    }
    Integer(table, path, "max_connections", 1, 65536, out.max_connections);
    Integer(table, path, "max_request_bytes", 1024, 1 << 20, out.max_request_bytes);
    Duration(table, path, "request_timeout", "\"10s\"", kMinTimeout, kMaxTimeout,
             out.request_timeout);
    Duration(table, path, "idle_timeout", "\"60s\"", kMinTimeout, kMaxTimeout, out.idle_timeout);
    if (const toml::node* users = table.get("users")) out.users = ReadWebUsers(*users);
  }

  // The entries of the array of tables `node` at `key` ([[key]] or an inline
  // array), each with its path "key[i]", 1-based as documented in config.h.
  // `required` names the keys an entry needs, for the error on a non-table.
  std::vector<std::pair<std::string, const toml::table*>> TableArray(
      const toml::node& node, const std::string& key, std::string_view required) const {
    const toml::array* array = node.as_array();
    if (array == nullptr) {
      Fail(node.source(), key,
           "expected an array of tables ([[" + key + "]] entries), got " +
               std::string(TypeName(node.type())));
    }
    std::vector<std::pair<std::string, const toml::table*>> entries;
    for (const toml::node& element : *array) {
      std::string path = key + "[" + std::to_string(entries.size() + 1) + "]";
      const toml::table* table = element.as_table();
      if (table == nullptr) {
        Fail(element.source(), path,
             "expected a table with " + std::string(required) + ", got " +
                 std::string(TypeName(element.type())));
      }
      entries.emplace_back(std::move(path), table);
    }
    return entries;
  }

  std::vector<WebUser> ReadWebUsers(const toml::node& node) const {
    std::vector<WebUser> users;
    for (const auto& [path, table] : TableArray(node, "web.users", "'name' and 'password_hash'")) {
      RejectUnknownKeys(*table, path, kWebUserKeys);
      const auto* name = String(*table, path, "name", "\"prometheus\"");
      if (name == nullptr) Fail(table->source(), path + ".name", "missing required key 'name'");
      if (name->get().empty() || name->get().find(':') != std::string::npos) {
        Fail(name->source(), path + ".name", "user name must be non-empty and contain no ':'");
      }
      for (const WebUser& earlier : users) {
        if (earlier.name == name->get()) {
          Fail(name->source(), path + ".name", "duplicate user '" + name->get() + "'");
        }
      }
      const auto* hash = String(*table, path, "password_hash", "\"$y$j9T$...\"");
      if (hash == nullptr) {
        Fail(table->source(), path + ".password_hash", "missing required key 'password_hash'");
      }
      if (!IsCryptHash(hash->get())) {
        Fail(hash->source(), path + ".password_hash",
             "not a crypt(3) password hash this system supports (expected e.g. '$y$...' or "
             "'$2b$...'; make one with pmu-exporter --hash-password)");
      }
      users.push_back({name->get(), hash->get()});
    }
    return users;
  }

  // The boolean value `name` of `table` stored into `out`; left alone when absent.
  void Boolean(const toml::table& table, const std::string& path, std::string_view name,
               bool& out) const {
    const toml::node* node = table.get(name);
    if (node == nullptr) return;
    if (!node->is_boolean()) {
      Fail(node->source(), JoinKey(path, name),
           "expected a boolean (true or false), got " + std::string(TypeName(node->type())));
    }
    out = node->as_boolean()->get();
  }

  void ReadStats(const toml::table& table, StatsConfig& out) const {
    const std::string path = "stats";
    RejectUnknownKeys(table, path, kStatsKeys);
    Boolean(table, path, "proc_stat", out.proc_stat);
    Boolean(table, path, "softirqs", out.softirqs);
    Boolean(table, path, "schedstat", out.schedstat);
    Boolean(table, path, "cpufreq", out.cpufreq);
  }

  std::vector<EventSpec> ReadEvents(const toml::node& node) const {
    const auto entries = TableArray(node, "events", "'name' and 'event'");
    if (entries.empty()) {
      Fail(node.source(), "events",
           "empty event list: add [[events]] entries, or remove 'events' to use the defaults");
    }
    std::vector<EventSpec> events;
    std::map<std::string, int, std::less<>> name_lines;  // name -> line of its first use
    for (const auto& [path, table] : entries) {
      events.push_back(ReadEvent(*table, path, name_lines));
    }
    return events;
  }

  // `name_lines` maps the names seen so far to their lines, for duplicates.
  EventSpec ReadEvent(const toml::table& table, const std::string& path,
                      std::map<std::string, int, std::less<>>& name_lines) const {
    RejectUnknownKeys(table, path, kEventKeys);
    EventSpec spec;
    spec.line = static_cast<int>(table.source().begin.line);
    spec.column = static_cast<int>(table.source().begin.column);

    const auto* name = String(table, path, "name", "\"instructions\"");
    if (name == nullptr) Fail(table.source(), path + ".name", "missing required key 'name'");
    spec.name = name->get();
    if (spec.name.empty()) Fail(name->source(), path + ".name", "event name must not be empty");
    const auto bad = std::find_if_not(spec.name.begin(), spec.name.end(), IsEventNameChar);
    if (bad != spec.name.end()) {
      Fail(name->source(), path + ".name",
           "event name '" + spec.name + "' contains '" + std::string(1, *bad) +
               "' (allowed: letters, digits, '_', '.', ':', '-')");
    }
    const auto [first, inserted] =
        name_lines.emplace(spec.name, static_cast<int>(name->source().begin.line));
    if (!inserted) {
      Fail(name->source(), path + ".name",
           "duplicate event name '" + spec.name + "' (first defined at line " +
               std::to_string(first->second) + ")");
    }

    const auto* event = String(table, path, "event", "\"instructions\"");
    if (event == nullptr) Fail(table.source(), path + ".event", "missing required key 'event'");
    spec.event = event->get();
    spec.event_line = static_cast<int>(event->source().begin.line);
    spec.event_column = static_cast<int>(event->source().begin.column);
    if (spec.event.find_first_not_of(" \t") == std::string::npos) {
      Fail(event->source(), path + ".event",
           "event string must not be empty (a libpfm4 event, e.g. \"instructions\")");
    }

    if (const auto* group = String(table, path, "group", "\"frontend\"")) spec.group = group->get();
    return spec;
  }

  // [cgroups]; `events` are checked against the final [[events]] list.
  void ReadCgroups(const toml::table& table, const std::vector<EventSpec>& events,
                   CgroupsConfig& out) const {
    const std::string path = "cgroups";
    RejectUnknownKeys(table, path, kCgroupsKeys);
    Boolean(table, path, "enabled", out.enabled);
    if (const auto* mode = String(table, path, "mode", "\"auto\"")) {
      out.mode = Choice(*mode, "cgroups.mode", "cgroup mode", kCgroupModes, "auto, bpf or perf");
    }
    if (const auto* root = String(table, path, "root", "\"/sys/fs/cgroup\"")) {
      if (!root->get().empty() && root->get().front() != '/') {
        Fail(root->source(), "cgroups.root", "root must be an absolute path or empty (detect)");
      }
      out.root = root->get();
    }
    const auto patterns = [&](std::string_view name, std::vector<std::string>& into) {
      const toml::node* node = table.get(name);
      if (node == nullptr) return;
      const std::string key = JoinKey(path, name);
      into = Strings(*node, key, "[\"/system.slice/*.service\"]");
      for (size_t i = 0; i < into.size(); ++i) {
        if (into[i].empty() || into[i].front() != '/') {
          Fail((*node->as_array())[i].source(), key,
               "pattern '" + into[i] + "' must start with '/' (paths are relative to root)");
        }
      }
    };
    patterns("include", out.include);
    patterns("exclude", out.exclude);
    Integer(table, path, "max", 1, 100'000, out.max);
    if (const auto* rescan = String(table, path, "rescan", "\"10s\"")) {
      out.rescan = ParseValue(*rescan, "cgroups.rescan", ParseDuration);
    }
    if (const toml::node* node = table.get("events")) {
      out.events = Strings(*node, "cgroups.events", "[\"cpu-clock\"]");
      for (size_t i = 0; i < out.events.size(); ++i) {
        const bool known = std::any_of(events.begin(), events.end(),
                                       [&](const EventSpec& e) { return e.name == out.events[i]; });
        if (!known) {
          std::vector<std::string_view> names;
          for (const EventSpec& e : events) names.push_back(e.name);
          std::string message = UnknownKeyMessage(out.events[i], names);
          message.replace(0, std::string_view("unknown key").size(), "unknown event");
          Fail((*node->as_array())[i].source(), "cgroups.events", message);
        }
      }
    }
  }

  // An array of strings.
  std::vector<std::string> Strings(const toml::node& node, const std::string& key,
                                   std::string_view example) const {
    const toml::array* array = node.as_array();
    if (array == nullptr) {
      Fail(node.source(), key,
           "expected an array of strings like " + std::string(example) + ", got " +
               std::string(TypeName(node.type())));
    }
    std::vector<std::string> values;
    for (const toml::node& element : *array) {
      if (!element.is_string()) {
        Fail(element.source(), key,
             "expected a string, got " + std::string(TypeName(element.type())));
      }
      values.push_back(element.as_string()->get());
    }
    return values;
  }

  std::vector<DerivedSpec> ReadDerivedList(const toml::node& node,
                                           const std::vector<EventSpec>& events) const {
    std::vector<DerivedSpec> list;
    std::map<std::string, int, std::less<>> name_lines;  // name -> line of its first use
    for (const auto& [path, table] : TableArray(node, "derived", "'name' and 'numerator'")) {
      DerivedSpec spec = ReadDerived(*table, path, events);
      const toml::source_region& where = table->get("name")->source();
      const auto [first, inserted] =
          name_lines.emplace(spec.name, static_cast<int>(where.begin.line));
      if (!inserted) {
        Fail(where, path + ".name",
             "duplicate derived metric '" + spec.name + "' (first defined at line " +
                 std::to_string(first->second) + ")");
      }
      list.push_back(std::move(spec));
    }
    return list;
  }

  DerivedSpec ReadDerived(const toml::table& table, const std::string& path,
                          const std::vector<EventSpec>& events) const {
    RejectUnknownKeys(table, path, kDerivedKeys);
    DerivedSpec spec;
    spec.line = static_cast<int>(table.source().begin.line);
    spec.column = static_cast<int>(table.source().begin.column);

    const auto* name = String(table, path, "name", "\"ipc\"");
    if (name == nullptr) Fail(table.source(), path + ".name", "missing required key 'name'");
    spec.name = name->get();
    if (!IsDerivedName(spec.name)) {
      Fail(name->source(), path + ".name",
           "derived metric name '" + spec.name +
               "' must match [a-z_][a-z0-9_]* (it becomes part of the metric name "
               "pmu_derived_<name>)");
    }
    for (std::string_view suffix : kReservedDerivedSuffixes) {
      if (spec.name.ends_with(suffix)) {
        Fail(name->source(), path + ".name",
             "derived metric name '" + spec.name + "' must not end in '" + std::string(suffix) +
                 "' (the exported series' names would collide)");
      }
    }
    if (const auto* scope = String(table, path, "scope", "\"host\"")) {
      spec.scope = Choice(*scope, path + ".scope", "scope", kDerivedScopes, "host or cpu");
    }
    Boolean(table, path, "per_second", spec.per_second);

    const toml::node* numerator = table.get("numerator");
    if (numerator == nullptr) {
      Fail(table.source(), path + ".numerator", "missing required key 'numerator'");
    }
    spec.numerator = ReadInputs(*numerator, path + ".numerator", events);
    const toml::node* denominator = table.get("denominator");
    if (spec.per_second && denominator != nullptr) {
      Fail(denominator->source(), path + ".denominator",
           "per_second = true divides by the interval's duration: remove 'denominator' (or "
           "per_second for a ratio)");
    }
    if (!spec.per_second) {
      if (denominator == nullptr) {
        Fail(table.source(), path + ".denominator",
             "missing required key 'denominator' (or set per_second = true for a rate)");
      }
      spec.denominator = ReadInputs(*denominator, path + ".denominator", events);
      if (IsStatInput(spec.numerator.front()) != IsStatInput(spec.denominator.front())) {
        Fail(denominator->source(), path + ".denominator",
             "numerator and denominator must both be events or both be statistics inputs (" +
                 std::string(kProcStatBusySeconds) + ", ...): they are sampled separately");
      }
    }
    if (const toml::node* buckets = table.get("buckets")) {
      spec.buckets = ReadBuckets(*buckets, path + ".buckets");
    }
    if (const toml::node* window = table.get("window")) {
      if (!IsStatInput(spec.numerator.front())) {
        Fail(window->source(), path + ".window",
             "'window' applies to /proc/stat inputs (" + std::string(kProcStatBusySeconds) +
                 ", ...); a metric of events takes one value per sampling interval");
      }
      Duration(table, path, "window", "\"1s\"", kMinStatWindow, kMaxStatWindow, spec.window);
    }
    return spec;
  }

  // A string or a non-empty array of strings, each a configured event name or
  // a statistics input; all of one kind, none repeated.
  std::vector<std::string> ReadInputs(const toml::node& node, const std::string& key,
                                      const std::vector<EventSpec>& events) const {
    std::vector<const toml::node*> items;
    if (const toml::array* array = node.as_array()) {
      if (array->empty()) Fail(node.source(), key, "empty list: name at least one event");
      for (const toml::node& element : *array) items.push_back(&element);
    } else {
      items.push_back(&node);
    }
    std::vector<std::string> names;
    for (const toml::node* item : items) {
      if (!item->is_string()) {
        Fail(item->source(), key,
             "expected an event name or an array of event names, got " +
                 std::string(TypeName(item->type())));
      }
      const std::string& input = item->as_string()->get();
      if (!IsStatInput(input) &&
          std::none_of(events.begin(), events.end(),
                       [&](const EventSpec& e) { return e.name == input; })) {
        Fail(item->source(), key, UnknownInputMessage(input, events));
      }
      if (std::find(names.begin(), names.end(), input) != names.end()) {
        Fail(item->source(), key, "'" + input + "' is listed twice");
      }
      if (!names.empty() && IsStatInput(input) != IsStatInput(names.front())) {
        Fail(item->source(), key, "cannot sum events and statistics inputs");
      }
      names.push_back(input);
    }
    return names;
  }

  static std::string UnknownInputMessage(const std::string& input,
                                         const std::vector<EventSpec>& events) {
    std::vector<std::string_view> known;
    for (const EventSpec& e : events) known.push_back(e.name);
    for (std::string_view stat : kStatInputs) known.push_back(stat);
    // The same suggestion rules as for keys, worded for inputs.
    std::string message = UnknownKeyMessage(input, known);
    const auto replace = [&message](std::string_view from, std::string_view to) {
      const size_t at = message.find(from);
      if (at != std::string::npos) message.replace(at, from.size(), to);
    };
    replace("unknown key", "unknown event");
    replace("(known keys: ", "(configured events and statistics inputs: ");
    return message;
  }

  std::vector<double> ReadBuckets(const toml::node& node, const std::string& key) const {
    const toml::array* array = node.as_array();
    if (array == nullptr) {
      Fail(node.source(), key,
           "expected an array of numbers like [0.5, 1, 2], got " +
               std::string(TypeName(node.type())));
    }
    if (array->empty()) {
      Fail(node.source(), key, "empty bucket list: leave 'buckets' out for the default");
    }
    std::vector<double> bounds;
    for (const toml::node& element : *array) {
      double bound = 0;
      if (const auto* integer = element.as_integer()) {
        bound = static_cast<double>(integer->get());
      } else if (const auto* floating = element.as_floating_point()) {
        bound = floating->get();
      } else {
        Fail(element.source(), key,
             "expected a number, got " + std::string(TypeName(element.type())));
      }
      if (!std::isfinite(bound) || bound <= 0) {
        Fail(element.source(), key, "bucket bounds must be positive and finite");
      }
      if (!bounds.empty() && bound <= bounds.back()) {
        Fail(element.source(), key, "bucket bounds must be strictly increasing");
      }
      bounds.push_back(bound);
    }
    return bounds;
  }

  const std::string& source_;
  const ParseContext& context_;
};

struct ScopedFd {
  int fd;
  ~ScopedFd() { close(fd); }
};

[[noreturn]] void ThrowUnreadable(const std::string& path, int error) {
  throw ConfigError(path, 0, 0, "",
                    "cannot read config file: " + std::string(std::strerror(error)));
}

}  // namespace

ConfigError::ConfigError(std::string file, int line, int column, std::string key,
                         std::string message)
    : std::runtime_error(FormatWhat(file, line, column, key, message)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      key_(std::move(key)),
      message_(std::move(message)) {}

std::string_view ToString(CgroupMode mode) {
  for (const auto& [value, name] : kCgroupModes) {
    if (value == mode) return name;
  }
  return "auto";
}

std::string_view ToString(LogTarget target) {
  for (const auto& [value, name] : kLogTargets) {
    if (value == target) return name;
  }
  return "auto";
}

std::string_view ToString(DerivedScope scope) {
  for (const auto& [value, name] : kDerivedScopes) {
    if (value == scope) return name;
  }
  return "host";
}

bool IsStatInput(std::string_view name) {
  return std::find(std::begin(kStatInputs), std::end(kStatInputs), name) != std::end(kStatInputs);
}

std::string_view ToString(LogLevel level) {
  for (const auto& [value, name] : kLogLevels) {
    if (value == level) return name;
  }
  return "unknown";
}

Config DefaultConfig() {
  Config config;
  for (std::string_view event : kDefaultEvents) {
    EventSpec spec;
    spec.name = std::string(event);
    spec.event = std::string(event);
    config.events.push_back(std::move(spec));
  }
  return config;
}

size_t FindInvalidUtf8(std::string_view text) {
  const auto byte = [&text](size_t i) { return static_cast<unsigned char>(text[i]); };
  const auto continuation = [&](size_t i) { return i < text.size() && (byte(i) & 0xC0) == 0x80; };
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = byte(i);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned char low = 0x80;  // bounds of the second byte (RFC 3629's table)
    unsigned char high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;   // overlong
      if (lead == 0xED) high = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;   // overlong
      if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + 1 >= text.size() || byte(i + 1) < low || byte(i + 1) > high) return i;
    for (size_t k = 2; k < length; ++k) {
      if (!continuation(i + k)) return i;
    }
    i += length;
  }
  return std::string_view::npos;
}

namespace {

// The offset of the first non-ASCII byte outside strings and comments, or
// npos. TOML 1.0 allows non-ASCII text only inside strings and comments (bare
// keys are ASCII); Debian's toml++ 3.3.0 reaches TOML_UNREACHABLE (undefined
// behaviour) on a non-ASCII bare key such as "a\xc8\x99= 1", so such bytes
// never reach it. Strings are tracked as TOML spells them: basic "..." with
// backslash escapes, literal '...', and their multi-line forms.
size_t FindNonAsciiOutsideStrings(std::string_view text) {
  enum class State { kCode, kComment, kBasic, kLiteral, kMultiBasic, kMultiLiteral };
  State state = State::kCode;
  const auto at = [&text](size_t i, std::string_view s) { return text.substr(i, s.size()) == s; };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    switch (state) {
      case State::kCode:
        if (static_cast<unsigned char>(c) >= 0x80) return i;
        if (c == '#') {
          state = State::kComment;
        } else if (at(i, "\"\"\"")) {
          state = State::kMultiBasic;
          i += 2;
        } else if (at(i, "'''")) {
          state = State::kMultiLiteral;
          i += 2;
        } else if (c == '"') {
          state = State::kBasic;
        } else if (c == '\'') {
          state = State::kLiteral;
        }
        break;
      case State::kComment:
        if (c == '\n') state = State::kCode;
        break;
      case State::kBasic:
        if (c == '\\') {
          ++i;
        } else if (c == '"' || c == '\n') {
          state = State::kCode;
        }
        break;
      case State::kLiteral:
        if (c == '\'' || c == '\n') state = State::kCode;
        break;
      case State::kMultiBasic:
        if (c == '\\') {
          ++i;
        } else if (at(i, "\"\"\"")) {
          state = State::kCode;
          i += 2;
        }
        break;
      case State::kMultiLiteral:
        if (at(i, "'''")) {
          state = State::kCode;
          i += 2;
        }
        break;
    }
  }
  return std::string_view::npos;
}

// Line and column (in characters, as an editor counts) of byte `offset`; the
// text before it is valid UTF-8.
std::pair<int, int> Position(std::string_view text, size_t offset) {
  int line = 1;
  int column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      ++line;
      column = 1;
    } else if ((c & 0xC0) != 0x80) {
      ++column;
    }
  }
  return {line, column};
}

}  // namespace

Config ParseConfig(std::string_view toml_text, const std::string& source_name,
                   const ParseContext& context) {
  if (const size_t bad = FindInvalidUtf8(toml_text); bad != std::string_view::npos) {
    const auto [line, column] = Position(toml_text, bad);
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02x", static_cast<unsigned char>(toml_text[bad]));
    throw ConfigError(
        source_name, line, column, "",
        std::string("invalid UTF-8 (byte ") + hex + "): the configuration must be UTF-8 text");
  }
  if (const size_t bad = FindNonAsciiOutsideStrings(toml_text); bad != std::string_view::npos) {
    const auto [line, column] = Position(toml_text, bad);
    throw ConfigError(source_name, line, column, "",
                      "invalid TOML: a non-ASCII character outside a string or comment (keys "
                      "without quotes are ASCII letters, digits, '_' and '-')");
  }
  toml::table root;
  try {
    root = toml::parse(toml_text, std::string_view(source_name));
  } catch (const toml::parse_error& e) {
    throw ConfigError(source_name, static_cast<int>(e.source().begin.line),
                      static_cast<int>(e.source().begin.column), "",
                      "invalid TOML: " + std::string(e.description()));
  }
  return Validator(source_name, context).Run(root);
}

Config LoadConfigFile(const std::string& path, const ParseContext& context) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; the type check
  // below refuses it (and every other non-regular file) before any read.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) ThrowUnreadable(path, errno);
  const ScopedFd closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) ThrowUnreadable(path, errno);
  if (S_ISDIR(st.st_mode)) ThrowUnreadable(path, EISDIR);
  if (!S_ISREG(st.st_mode)) {
    throw ConfigError(path, 0, 0, "",
                      "cannot read config file: not a regular file (a FIFO, socket or device "
                      "cannot be a configuration)");
  }
  const auto too_large = [&path](uint64_t size) {
    return ConfigError(path, 0, 0, "",
                       "cannot read config file: " + std::to_string(size) +
                           " bytes is larger than the limit of " + std::to_string(kMaxConfigBytes) +
                           " bytes");
  };
  if (static_cast<uint64_t>(st.st_size) > kMaxConfigBytes) {
    throw too_large(static_cast<uint64_t>(st.st_size));
  }
  // Read at most one byte past the limit: a file that grows while it is
  // read is refused too, never read without bound.
  std::string text(kMaxConfigBytes + 1, '\0');
  size_t have = 0;
  while (have < text.size()) {
    const ssize_t n = read(fd, text.data() + have, text.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowUnreadable(path, errno);
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  if (have > kMaxConfigBytes) throw too_large(have);
  text.resize(have);
  return ParseConfig(text, path, context);
}

std::string Summary(const Config& config) {
  std::set<std::string_view> named_groups;
  size_t groups = 0;
  for (const EventSpec& event : config.events) {
    if (event.group.empty()) {
      ++groups;
    } else if (named_groups.insert(event.group).second) {
      ++groups;
    }
  }
  const auto count = [](size_t n, std::string_view noun) {
    return std::to_string(n) + " " + std::string(noun) + (n == 1 ? "" : "s");
  };
  const SamplingConfig& sampling = config.sampling;
  return "config OK: " + config.source + ": " + count(config.events.size(), "event") + " in " +
         count(groups, "group") + ", cpus " +
         (sampling.all_cpus ? std::string("all") : FormatCpuList(sampling.cpus)) + ", interval " +
         FormatDuration(sampling.interval) + ", listen " + config.exporter.listen.ToString() +
         config.exporter.metrics_path;
}

}  // namespace pmu::config
