// The configuration loader: TOML text to a validated Config (durations, CPU
// lists, addresses, events, derived metrics, web users), and the value
// parsers on the raw input with their round-trip promises.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "pmu/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  namespace c = pmu::config;
  try {
    const c::Config config = c::ParseConfig(text, "fuzz.toml", c::ParseContext{{0, 1, 2, 3}});
    // What the daemon relies on once a file is accepted.
    if (config.sampling.interval < c::kMinInterval || config.sampling.interval > c::kMaxInterval) {
      __builtin_trap();
    }
    if (config.web.request_timeout > c::kMaxTimeout || config.web.idle_timeout > c::kMaxTimeout) {
      __builtin_trap();
    }
    if (config.exporter.metrics_path.empty() || config.exporter.metrics_path[0] != '/') {
      __builtin_trap();
    }
    c::Summary(config);
  } catch (const c::ConfigError&) {
  }
  try {
    const auto d = c::ParseDuration(text);
    if (c::ParseDuration(c::FormatDuration(d)) != d) __builtin_trap();
  } catch (const std::invalid_argument&) {
  }
  try {
    const auto cpus = c::ParseCpuList(text);
    if (c::ParseCpuList(c::FormatCpuList(cpus)) != cpus) __builtin_trap();
  } catch (const std::invalid_argument&) {
  }
  try {
    const auto address = c::ParseListenAddress(text);
    if (!(c::ParseListenAddress(address.ToString()) == address)) __builtin_trap();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
