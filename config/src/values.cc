// Parsers and formatters for the string-typed values of the config: durations,
// CPU lists and listen addresses. They know nothing about TOML; config.cc turns
// their std::invalid_argument into a positioned ConfigError.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "pmu/config/config.h"

namespace pmu::config {
namespace {

struct DurationUnit {
  std::string_view suffix;
  uint64_t nanoseconds;
};

// Largest first: FormatDuration picks the first unit that divides exactly.
constexpr std::array<DurationUnit, 6> kDurationUnits{{
    {"h", 3'600'000'000'000},
    {"m", 60'000'000'000},
    {"s", 1'000'000'000},
    {"ms", 1'000'000},
    {"us", 1'000},
    {"ns", 1},
}};
constexpr std::string_view kUnitList = "ns, us, ms, s, m or h";
constexpr uint64_t kMaxDurationNs = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Quoted(std::string_view text) {
  std::string out = "'";
  out += text;
  out += "'";
  return out;
}

[[noreturn]] void Invalid(std::string message) { throw std::invalid_argument(std::move(message)); }

// The leading run of decimal digits of `text` (possibly empty).
std::string_view TakeDigits(std::string_view text) {
  size_t n = 0;
  while (n < text.size() && IsDigit(text[n])) ++n;
  return text.substr(0, n);
}

// Parses a run of digits into `out`; false on overflow past `max`.
bool DigitsToUint(std::string_view digits, uint64_t max, uint64_t& out) {
  uint64_t value = 0;
  for (char c : digits) {
    const auto digit = static_cast<uint64_t>(c - '0');
    if (value > (max - digit) / 10) return false;
    value = value * 10 + digit;
  }
  out = value;
  return true;
}

std::optional<uint64_t> UnitNanoseconds(std::string_view suffix) {
  if (suffix == "\u00b5s") return 1'000;  // "µs" as an alias of "us"
  for (const DurationUnit& unit : kDurationUnits) {
    if (unit.suffix == suffix) return unit.nanoseconds;
  }
  return std::nullopt;
}

std::string_view TrimSpaces(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

int ParseCpuNumber(std::string_view number, std::string_view entry) {
  if (number.empty() || TakeDigits(number).size() != number.size()) {
    Invalid("invalid CPU list entry " + Quoted(entry) +
            " (expected a CPU number N or a range N-M, e.g. \"0-3,8\")");
  }
  uint64_t value = 0;
  if (!DigitsToUint(number, static_cast<uint64_t>(kMaxCpuNumber), value)) {
    Invalid("CPU number " + Quoted(number) + " is too large (at most " +
            std::to_string(kMaxCpuNumber) + ")");
  }
  return static_cast<int>(value);
}

}  // namespace

std::chrono::nanoseconds ParseDuration(std::string_view text) {
  const std::string quoted = Quoted(text);
  if (text.empty()) Invalid("empty duration (expected e.g. \"1s\" or \"250ms\")");
  if (text.front() == '-') Invalid("duration " + quoted + " must be positive");

  std::string_view rest = text;
  const std::string_view whole = TakeDigits(rest);
  rest.remove_prefix(whole.size());
  std::string_view fraction;
  if (!rest.empty() && rest.front() == '.') {
    rest.remove_prefix(1);
    fraction = TakeDigits(rest);
    rest.remove_prefix(fraction.size());
    if (fraction.empty()) Invalid("invalid duration " + quoted + ": no digits after '.'");
  }
  if (whole.empty()) {
    Invalid("invalid duration " + quoted + ": expected a number followed by a unit (" +
            std::string(kUnitList) + "), e.g. \"1s\"");
  }
  if (rest.empty()) {
    Invalid("duration " + quoted + " has no unit (add one of " + std::string(kUnitList) +
            ", e.g. \"" + std::string(text) + "s\")");
  }
  const std::optional<uint64_t> unit = UnitNanoseconds(rest);
  if (!unit) {
    Invalid("invalid duration " + quoted + ": unknown unit " + Quoted(TrimSpaces(rest)) +
            " (expected " + std::string(kUnitList) + " right after the number)");
  }

  const std::string overflow = "duration " + quoted + " is too long";
  uint64_t whole_value = 0;
  if (!DigitsToUint(whole, kMaxDurationNs / *unit, whole_value)) Invalid(overflow);
  uint64_t total = whole_value * *unit;

  // fraction = f / 10^k; f * unit / 10^k must be a whole number of ns.
  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  if (!fraction.empty()) {
    constexpr size_t kMaxFractionDigits = 18;  // 10^18 still fits in uint64_t
    if (fraction.size() > kMaxFractionDigits) {
      Invalid("duration " + quoted + " has too many digits after '.'");
    }
    uint64_t f = 0;
    DigitsToUint(fraction, std::numeric_limits<uint64_t>::max(), f);
    uint64_t scale = 1;
    for (size_t i = 0; i < fraction.size(); ++i) scale *= 10;
    const uint64_t g = std::gcd(*unit, scale);
    if (f % (scale / g) != 0) Invalid("duration " + quoted + " is finer than 1ns");
    const uint64_t fraction_ns = f / (scale / g) * (*unit / g);
    if (total > kMaxDurationNs - fraction_ns) Invalid(overflow);
    total += fraction_ns;
  }
  if (total == 0) Invalid("duration " + quoted + " must be positive");
  return std::chrono::nanoseconds(static_cast<int64_t>(total));
}

std::string FormatDuration(std::chrono::nanoseconds d) {
  const int64_t count = d.count();
  if (count == 0) return "0s";
  // Negative durations never come out of ParseDuration; format them anyway.
  const uint64_t magnitude =
      count < 0 ? uint64_t{0} - static_cast<uint64_t>(count) : static_cast<uint64_t>(count);
  const std::string sign = count < 0 ? "-" : "";
  for (const DurationUnit& unit : kDurationUnits) {
    if (magnitude % unit.nanoseconds == 0) {
      return sign + std::to_string(magnitude / unit.nanoseconds) + std::string(unit.suffix);
    }
  }
  return sign + std::to_string(magnitude) + "ns";  // unreachable: ns divides everything
}

std::vector<int> ParseCpuList(std::string_view text) {
  if (TrimSpaces(text).empty()) Invalid("empty CPU list (use \"all\" or e.g. \"0-3,8\")");
  std::vector<int> cpus;
  std::string_view rest = text;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view entry = TrimSpaces(rest.substr(0, comma));
    if (entry.empty()) Invalid("empty entry in CPU list " + Quoted(text));
    const size_t dash = entry.find('-');
    if (dash == std::string_view::npos) {
      cpus.push_back(ParseCpuNumber(entry, entry));
    } else {
      if (dash == 0) {
        Invalid("invalid CPU list entry " + Quoted(entry) + " (CPU numbers are not negative)");
      }
      const int first = ParseCpuNumber(entry.substr(0, dash), entry);
      const int last = ParseCpuNumber(entry.substr(dash + 1), entry);
      if (first > last) {
        Invalid("CPU range " + Quoted(entry) + " is reversed (write it as " + std::to_string(last) +
                "-" + std::to_string(first) + ")");
      }
      for (int cpu = first; cpu <= last; ++cpu) cpus.push_back(cpu);
    }
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::string FormatCpuList(const std::vector<int>& cpus) {
  std::vector<int> sorted = cpus;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::string out;
  for (size_t i = 0; i < sorted.size();) {
    size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(sorted[i]);
    if (j > i) out += "-" + std::to_string(sorted[j]);
    i = j + 1;
  }
  return out;
}

ListenAddress ParseListenAddress(std::string_view text) {
  constexpr std::string_view kExamples = "e.g. \"127.0.0.1:9842\" or \"[::1]:9842\"";
  if (text.empty())
    Invalid("empty listen address (expected HOST:PORT, " + std::string(kExamples) + ")");
  ListenAddress address;
  std::string_view port;
  if (text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      Invalid("listen address " + Quoted(text) + " lacks the ']' closing the IPv6 address");
    }
    address.host = std::string(text.substr(1, close - 1));
    address.ipv6 = true;
    std::string_view after = text.substr(close + 1);
    if (after.empty()) {
      Invalid("listen address " + Quoted(text) + " has no port (expected [IPv6]:PORT, " +
              std::string(kExamples) + ")");
    }
    if (after.front() != ':') {
      Invalid("listen address " + Quoted(text) + ": expected ':' and a port after ']'");
    }
    port = after.substr(1);
    in6_addr parsed{};
    if (inet_pton(AF_INET6, address.host.c_str(), &parsed) != 1) {
      Invalid(Quoted(address.host) + " is not a valid IPv6 address");
    }
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      Invalid("listen address " + Quoted(text) + " has no port (expected HOST:PORT, " +
              std::string(kExamples) + ")");
    }
    const std::string_view host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      Invalid("IPv6 address in " + Quoted(text) + " must be in brackets, e.g. \"[::1]:9842\"");
    }
    if (host.empty()) {
      Invalid("listen address " + Quoted(text) +
              " has no host (use 0.0.0.0 to listen on every IPv4 address)");
    }
    address.host = std::string(host);
    in_addr parsed{};
    if (inet_pton(AF_INET, address.host.c_str(), &parsed) != 1) {
      const bool looks_numeric =
          std::all_of(host.begin(), host.end(), [](char c) { return IsDigit(c) || c == '.'; });
      if (looks_numeric) Invalid(Quoted(host) + " is not a valid IPv4 address");
      Invalid("host " + Quoted(host) +
              " is not an IP address: host names are not resolved, use an IP literal such as "
              "127.0.0.1, 0.0.0.0 or [::1]");
    }
  }
  uint64_t port_value = 0;
  if (port.empty() || TakeDigits(port).size() != port.size()) {
    Invalid("port " + Quoted(port) + " in listen address " + Quoted(text) +
            " is not a number (0-65535; 0 picks a free port)");
  }
  if (!DigitsToUint(port, std::numeric_limits<uint16_t>::max(), port_value)) {
    Invalid("port " + Quoted(port) + " in listen address " + Quoted(text) +
            " is out of range (0-65535)");
  }
  address.port = static_cast<uint16_t>(port_value);
  return address;
}

std::string ListenAddress::ToString() const {
  const std::string port_text = ":" + std::to_string(port);
  return ipv6 ? "[" + host + "]" + port_text : host + port_text;
}

}  // namespace pmu::config
