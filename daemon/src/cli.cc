#include "pmu/daemon/cli.h"

#include <string_view>

namespace pmu::daemon {

CliOptions ParseCli(int argc, const char* const* argv) {
  CliOptions opts;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value_of = [&](std::string_view name) -> std::string {
      if (auto eq = arg.find('='); eq != std::string_view::npos)
        return std::string(arg.substr(eq + 1));
      if (i + 1 >= argc) throw CliError(std::string(name) + " needs an argument");
      return argv[++i];
    };
    if (arg == "--config" || arg == "-c" || arg.starts_with("--config=")) {
      opts.config_path = value_of("--config");
      if (opts.config_path.empty()) throw CliError("--config needs a non-empty path");
    } else if (arg == "--check-config") {
      opts.check_config = true;
    } else if (arg == "--once") {
      opts.once = true;
    } else if (arg == "--list-events" || arg.starts_with("--list-events=")) {
      opts.list_events = true;
      if (auto eq = arg.find('='); eq != std::string_view::npos) {
        opts.list_pattern = std::string(arg.substr(eq + 1));
      } else if (i + 1 < argc && argv[i + 1][0] != '-') {
        opts.list_pattern = argv[++i];
      }
    } else if (arg == "--hash-password") {
      opts.hash_password = true;
    } else if (arg == "--version" || arg == "-V") {
      opts.version = true;
    } else if (arg == "--help" || arg == "-h") {
      opts.help = true;
    } else {
      throw CliError("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (static_cast<int>(opts.check_config) + static_cast<int>(opts.once) +
          static_cast<int>(opts.list_events) + static_cast<int>(opts.hash_password) >
      1) {
    throw CliError("--check-config, --once, --list-events and --hash-password cannot be combined");
  }
  return opts;
}

std::string UsageText(const std::string& program) {
  return "Usage: " + program +
         " [OPTIONS]\n"
         "Exports per-CPU hardware and software performance counters to Prometheus.\n"
         "\n"
         "  -c, --config PATH       TOML configuration file: a regular file of at most 1 MiB\n"
         "                          of UTF-8 (default: built-in configuration)\n"
         "      --check-config      validate the configuration, print a summary and one line\n"
         "                          per event (countable here or why not), exit 0 or 2\n"
         "      --once              take two samples one interval apart, print the exposition\n"
         "                          to standard output and exit (SIGINT/SIGTERM end it early,\n"
         "                          without output)\n"
         "      --list-events [PAT] list libpfm4 events, perf software events, sysfs PMU\n"
         "                          events (scale, unit) and tracepoints (substring PAT),\n"
         "                          marking those this host can count\n"
         "      --hash-password     read a password from standard input (no echo on a\n"
         "                          terminal) and print its yescrypt hash for [[web.users]]\n"
         "  -V, --version           print the version and exit\n"
         "  -h, --help              print this help and exit\n"
         "\n"
         "Exit status: 0 success, 1 run-time failure, 2 bad configuration or usage.\n";
}

}  // namespace pmu::daemon
