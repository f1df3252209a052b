// pmu-exporter entry point: command line, configuration, logging, signals.
#include <pmu/rseq/abi.h>
#include <pmu/rseq/membarrier.h>
#include <pmu/rseq/read_fault.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>

#include "pmu/attribution/attribution.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/collectors/pfm.h"
#include "pmu/collectors/topology.h"
#include "pmu/config/config.h"
#include "pmu/daemon/cli.h"
#include "pmu/daemon/event_commands.h"
#include "pmu/daemon/logging.h"
#include "pmu/daemon/notify.h"
#include "pmu/daemon/service.h"
#include "pmu/metrics/build_info.h"
#include "pmu/metrics/cardinality.h"
#include "pmu/web/auth.h"

namespace {

using pmu::daemon::CliOptions;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// --check-config: the summary line, then the series the configuration
// would export on this host (events probed as start-up probes them).
int CheckConfig(const pmu::config::Config& config) {
  std::cout << pmu::config::Summary(config) << "\n";
  const std::vector<int> online = pmu::collectors::OnlineCpus();
  const std::vector<int> cpus =
      config.sampling.all_cpus ? pmu::collectors::PossibleCpus() : config.sampling.cpus;
  auto plan = std::make_shared<const pmu::collectors::EventPlan>(pmu::collectors::BuildEventPlan(
      config.events, pmu::collectors::DefaultPerfSyscalls(), online.front()));
  pmu::daemon::PrintEventLines(config, *plan, std::cout);
  // [cgroups]: the worst case of `max`, as start-up counts it.
  std::vector<std::shared_ptr<const pmu::metrics::FamilySource>> extra;
  if (config.cgroups.enabled) {
    extra.push_back(pmu::attribution::EstimateCgroupFamilies(config, *plan));
  }
  const auto estimate = pmu::metrics::EstimateSeries(config, plan, cpus, nullptr, std::move(extra));
  std::cout << "series: " << estimate.total << " of at most " << config.exporter.max_series
            << " ([exporter] max_series) on " << cpus.size() << " CPUs\n";
  try {
    pmu::metrics::CheckCardinality(config, estimate);
  } catch (const pmu::metrics::CardinalityError& e) {
    spdlog::error("invalid configuration: {}", e.what());
    return kExitUsage;
  }
  return kExitOk;
}

sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

pmu::config::Config LoadConfig(const std::string& path) {
  if (path.empty()) return pmu::config::DefaultConfig();
  pmu::config::ParseContext context{pmu::collectors::PossibleCpus()};
  pmu::config::Config config = pmu::config::LoadConfigFile(path, context);
  pmu::daemon::ValidateEvents(config);  // as start-up resolves them; ConfigError otherwise
  return config;
}

std::string ReadyStatus(const pmu::daemon::Service& service) {
  const auto& plan = service.pipeline().plan();
  return "serving " + service.url() + ": " + std::to_string(plan.SupportedCount()) + " of " +
         std::to_string(plan.events.size()) + " events on " +
         std::to_string(service.pipeline().cpus().size()) + " CPUs";
}

// SIGHUP: parse and validate first; only a valid file replaces the running
// configuration. An invalid one is logged (file:line:column: key) and the old
// configuration keeps serving without a gap.
void Reload(pmu::daemon::Service& service, const std::string& path,
            const pmu::daemon::Notifier& notifier) {
  notifier.Reloading();
  if (path.empty()) {
    spdlog::info("SIGHUP: running on the built-in default configuration; nothing to reload");
  } else {
    try {
      pmu::config::Config next = LoadConfig(path);
      pmu::daemon::ConfigureLogging(next.log);
      service.Reload(next);
    } catch (const pmu::config::ConfigError& e) {
      service.RecordFailedReload();
      spdlog::error("reload rejected, keeping the running configuration: invalid configuration: {}",
                    e.what());
    } catch (const std::exception& e) {
      spdlog::error("reload failed, keeping the running configuration: {}", e.what());
    }
  }
  notifier.Ready(ReadyStatus(service));
}

// Runs until SIGINT or SIGTERM (blocked in every thread; only this loop takes
// them). Feeds the systemd watchdog only while every pipeline thread proves
// it is alive, so a stuck pipeline, not just a live process, stops the pings.
void MainLoop(pmu::daemon::Service& service, const std::string& config_path,
              const pmu::daemon::Notifier& notifier) {
  using namespace std::chrono;
  const sigset_t set = HandledSignals();
  const auto watchdog = notifier.watchdog_interval();
  const nanoseconds tick = watchdog ? duration_cast<nanoseconds>(*watchdog) / 4 : seconds(1);
  bool stalled = false;
  for (;;) {
    const timespec timeout{static_cast<time_t>(tick.count() / 1000000000),
                           static_cast<long>(tick.count() % 1000000000)};
    // Without a watchdog there is nothing to do between signals: no wake-up.
    const int sig = watchdog ? sigtimedwait(&set, nullptr, &timeout) : sigwaitinfo(&set, nullptr);
    if (sig == SIGINT || sig == SIGTERM) {
      spdlog::info("{} received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
      notifier.Stopping();
      return;
    }
    if (sig == SIGHUP) Reload(service, config_path, notifier);
    service.RetryEndpoint();  // no-op while the endpoint listens
    if (watchdog) {
      const bool healthy =
          service.PipelineHeartbeatAge() < duration_cast<nanoseconds>(*watchdog) / 2;
      if (healthy) notifier.Watchdog();
      if (healthy == stalled) {
        stalled = !healthy;
        if (stalled) {
          spdlog::error(
              "the sampling pipeline has not made progress for {} ms; withholding "
              "the watchdog ping",
              duration_cast<milliseconds>(service.PipelineHeartbeatAge()).count());
        } else {
          spdlog::info("the sampling pipeline is making progress again");
        }
      }
    }
  }
}

// Waits up to `duration` for SIGINT or SIGTERM (blocked in every thread, so
// only a wait collects them); returns the signal, or 0 when none came.
int WaitForStopSignal(std::chrono::nanoseconds duration) {
  using namespace std::chrono;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  const auto deadline = steady_clock::now() + duration;
  for (;;) {
    const nanoseconds left = deadline - steady_clock::now();
    if (left <= nanoseconds(0)) return 0;
    const timespec timeout{static_cast<time_t>(left.count() / 1000000000),
                           static_cast<long>(left.count() % 1000000000)};
    const int sig = sigtimedwait(&set, nullptr, &timeout);
    if (sig > 0) return sig;
    if (errno != EINTR && errno != EAGAIN) return 0;
  }
}

int RunOnce(const pmu::config::Config& config) {
  pmu::daemon::Service service(config);
  service.Start();
  // The interval between the two readings: SIGINT/SIGTERM end it (and the
  // run, without output) however long it is.
  if (const int sig = WaitForStopSignal(config.sampling.interval)) {
    spdlog::info("{} received, stopping before the second reading",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    service.Stop();
    return 128 + sig;
  }
  service.SampleOnce();
  std::cout << service.RenderMetrics();
  service.Stop();
  return kExitOk;
}

int Serve(const pmu::config::Config& config, const std::string& config_path) {
  pmu::daemon::Notifier notifier;
  pmu::daemon::Service service(config);
  if (auto wd = notifier.watchdog_interval()) service.set_heartbeat_period(*wd / 4);
  // `make hw-check` forces each read path in turn.
  if (const char* path = std::getenv("PMU_EXPORTER_READ_PATH")) {
    pmu::sampling::SamplerOptions sampler;
    if (!pmu::sampling::ApplyReadPathOverride(path, &sampler)) {
      spdlog::critical("PMU_EXPORTER_READ_PATH={}: expected auto, read or remote", path);
      return kExitUsage;
    }
    spdlog::warn("PMU_EXPORTER_READ_PATH={}: read path forced for diagnostics", path);
    service.set_sampler_options(sampler);
  }
  service.Start();
  service.Serve();
  // Ready only now: the endpoint listens and the first reading is in.
  notifier.Ready(ReadyStatus(service));
  MainLoop(service, config_path, notifier);
  service.Stop();
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // Block the termination signals before any thread exists, so every thread
  // inherits the mask and only sigwait() in the main thread receives them.
  const sigset_t set = HandledSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // membarrier's RSEQ command must be registered while the process is still
  // single-threaded; the rings use it to fence producers when it is there.
  const bool membarrier = pmu::rseq::RegisterMembarrierRseq();
  // A rdpmc that faults (user rdpmc switched off at run time) becomes a
  // read() fallback instead of killing the daemon; installed while
  // single-threaded so every thread sees it.
  const bool fault_handler = pmu::rseq::InstallReadFaultHandler();
  signal(SIGPIPE, SIG_IGN);

  pmu::daemon::InitLogging();
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
    std::cout << program << " " << pmu::metrics::kVersion << " (" << pmu::metrics::kRevision
              << ")\n";
    return kExitOk;
  }

  try {
    if (opts.list_events) return pmu::daemon::ListEvents(opts.list_pattern, std::cout);
    if (opts.hash_password) {
      const std::string password = pmu::web::ReadPassword(std::cin, STDIN_FILENO);
      if (password.empty()) {
        std::fprintf(stderr, "%s: empty password\n", program.c_str());
        return kExitUsage;
      }
      std::cout << pmu::web::HashPassword(password) << "\n";
      return kExitOk;
    }

    pmu::config::Config config;
    try {
      config = LoadConfig(opts.config_path);
    } catch (const pmu::config::ConfigError& e) {
      spdlog::error("invalid configuration: {}", e.what());
      return kExitUsage;
    }
    pmu::daemon::ConfigureLogging(config.log);

    if (opts.check_config) return CheckConfig(config);
    spdlog::info("pmu-exporter {} ({}) starting with configuration {}", pmu::metrics::kVersion,
                 pmu::metrics::kRevision, config.source);
    spdlog::info("{}; membarrier RSEQ fence {}", pmu::rseq::ModeDescription(),
                 membarrier ? "registered" : "unavailable (rings fence by visiting the CPU)");
    if (!fault_handler) {
      spdlog::warn("cannot install the rdpmc fault handler ({}); rdpmc is not used",
                   std::strerror(errno));
    }
    return opts.once ? RunOnce(config) : Serve(config, opts.config_path);
  } catch (const pmu::metrics::CardinalityError& e) {
    spdlog::error("invalid configuration: {}", e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kExitFailure;
  }
}
