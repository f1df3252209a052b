// Command line of pmu-exporter.
#pragma once

#include <stdexcept>
#include <string>

namespace pmu::daemon {

struct CliOptions {
  std::string config_path;  // "" = built-in default
  bool check_config = false;
  bool once = false;
  bool list_events = false;
  std::string list_pattern;
  bool hash_password = false;
  bool version = false;
  bool help = false;
};

class CliError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws CliError for unknown options or missing arguments.
CliOptions ParseCli(int argc, const char* const* argv);
std::string UsageText(const std::string& program);

}  // namespace pmu::daemon
