// pmu-exporter entry point: command line, configuration, logging, signals.
#include <signal.h>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>

#include "pmu/collectors/pfm.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/collectors/topology.h"
#include "pmu/config/config.h"
#include "pmu/daemon/build_info.h"
#include "pmu/daemon/cli.h"
#include "pmu/daemon/exporter.h"
#include "pmu/daemon/service.h"

namespace {

using pmu::daemon::CliOptions;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

spdlog::level::level_enum ToSpdlog(pmu::config::LogLevel level) {
  switch (level) {
    case pmu::config::LogLevel::kTrace: return spdlog::level::trace;
    case pmu::config::LogLevel::kDebug: return spdlog::level::debug;
    case pmu::config::LogLevel::kInfo: return spdlog::level::info;
    case pmu::config::LogLevel::kWarn: return spdlog::level::warn;
    case pmu::config::LogLevel::kError: return spdlog::level::err;
  }
  return spdlog::level::info;
}

void SetUpLogging() {
  auto logger = spdlog::stderr_color_mt("pmu-exporter");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%-5l%$ %v");
  spdlog::set_default_logger(logger);
}

int ListEvents(const std::string& pattern) {
  auto& sys = pmu::collectors::DefaultPerfSyscalls();
  int cpu = pmu::collectors::OnlineCpus().front();
  for (const auto& e : pmu::collectors::ListEvents(pattern)) {
    auto enc = pmu::collectors::EncodeEvent(e.name);
    const char* mark = "  ";
    if (enc.ok) {
      int fd = sys.Open(&enc.attr, -1, cpu, -1, 0);
      if (fd >= 0) {
        sys.Close(fd);
        mark = "* ";
      }
    }
    std::printf("%s%-50s %s\n", mark, e.name.c_str(), e.description.c_str());
  }
  std::printf("\n* = this host can count the event (CPU-wide on cpu %d)\n", cpu);
  return kExitOk;
}

// Waits for SIGINT or SIGTERM (blocked in every thread). SIGHUP is accepted
// and logged; configuration reload is not implemented yet.
void WaitForTermination() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      spdlog::warn("SIGHUP received: configuration reload is not supported yet; ignoring");
      continue;
    }
    spdlog::info("{} received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    return;
  }
}

int RunOnce(const pmu::config::Config& config) {
  pmu::daemon::Service service(config);
  service.Start();
  std::this_thread::sleep_for(config.sampling.interval);
  service.SampleOnce();
  std::cout << pmu::daemon::SerializeText(pmu::daemon::BuildFamilies(service.Snapshot()));
  service.Stop();
  return kExitOk;
}

int Serve(const pmu::config::Config& config) {
  pmu::daemon::Service service(config);
  service.Start();
  service.Serve();
  WaitForTermination();
  service.Stop();
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the termination signals before any thread exists, so every thread
  // inherits the mask and only sigwait() in the main thread receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  SetUpLogging();
  const std::string program = "pmu-exporter";
  CliOptions opts;
  try {
    opts = pmu::daemon::ParseCli(argc, argv);
  } catch (const pmu::daemon::CliError& e) {
    std::fprintf(stderr, "%s: %s\n%s", program.c_str(), e.what(),
                 pmu::daemon::UsageText(program).c_str());
    return kExitUsage;
  }
  if (opts.help) {
    std::cout << pmu::daemon::UsageText(program);
    return kExitOk;
  }
  if (opts.version) {
    std::cout << program << " " << pmu::daemon::kVersion << " (" << pmu::daemon::kRevision
              << ")\n";
    return kExitOk;
  }

  try {
    if (opts.list_events) return ListEvents(opts.list_pattern);

    pmu::config::Config config;
    try {
      if (opts.config_path.empty()) {
        config = pmu::config::DefaultConfig();
      } else {
        pmu::config::ParseContext context{pmu::collectors::PossibleCpus()};
        config = pmu::config::LoadConfigFile(opts.config_path, context);
      }
    } catch (const pmu::config::ConfigError& e) {
      spdlog::error("invalid configuration: {}", e.what());
      return kExitUsage;
    }
    spdlog::set_level(ToSpdlog(config.log.level));

    if (opts.check_config) {
      std::cout << pmu::config::Summary(config) << "\n";
      return kExitOk;
    }
    spdlog::info("pmu-exporter {} ({}) starting with configuration {}", pmu::daemon::kVersion,
                 pmu::daemon::kRevision, config.source);
    return opts.once ? RunOnce(config) : Serve(config);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kExitFailure;
  }
}
