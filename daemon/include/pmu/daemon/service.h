// Service: the running exporter. Owns the current Pipeline, the sampler
// thread and the Prometheus endpoint, and applies reloads.
//
// Life cycle (main thread): construct -> Start() -> Serve() -> [Reload()]...
// -> Stop(). Start() builds the pipeline and takes the first reading; Serve()
// binds the endpoint and starts sampling every interval. Stop() is idempotent,
// returns within milliseconds and closes every perf fd.
//
// Thread safety: Start/Serve/Reload/Stop belong to one thread (main);
// Snapshot, Status and SamplerHeartbeatAge may be called from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>

#include <prometheus/metric_family.h>

#include "pmu/collectors/perf_syscalls.h"
#include "pmu/config/config.h"
#include "pmu/daemon/aggregator.h"
#include "pmu/daemon/periodic_loop.h"
#include "pmu/daemon/pipeline.h"

namespace pmu::web {
class HttpServer;
}  // namespace pmu::web

namespace pmu::daemon {

// Service-level facts exported beside the counters.
struct ServiceStatus {
  bool last_reload_successful = true;
  double last_reload_success_unix_seconds = 0;  // start-up counts as a successful load
};

class Service {
 public:
  explicit Service(config::Config config,
                   collectors::PerfSyscalls& sys = collectors::DefaultPerfSyscalls(),
                   std::string sysfs_root = "/");
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Throws std::runtime_error on a fatal start-up problem.
  void Start();
  // Reads every CPU once into the aggregator.
  void SampleOnce();
  // Binds the endpoint (throws std::runtime_error naming the address on
  // failure), writes the port file, starts the sampler thread.
  void Serve();
  // Applies a validated configuration. On failure (e.g. the new address
  // cannot be bound) throws std::runtime_error and the old configuration
  // keeps running untouched. Records the outcome in Status() either way.
  void Reload(const config::Config& next);
  // Records a reload that failed before reaching Reload() (invalid file).
  void RecordFailedReload();
  void Stop();

  // How often the sampler thread proves it is alive even when the sampling
  // interval is longer (set before Serve(); the watchdog uses it).
  void set_heartbeat_period(std::chrono::nanoseconds period) { heartbeat_period_ = period; }
  // Sampler options (tests: fake rdpmc source); set before Start().
  void set_sampler_options(SamplerOptions options) { sampler_options_ = options; }
  // Time since the sampler thread last completed a loop iteration; the
  // watchdog is fed only while this stays small.
  std::chrono::nanoseconds SamplerHeartbeatAge() const;

  int bound_port() const { return bound_port_; }
  std::string url() const;
  AggregateSnapshot Snapshot() const;
  ServiceStatus Status() const;
  // Everything /metrics serves: counters, kernel statistics, service status,
  // HTTP server statistics.
  std::vector<prometheus::MetricFamily> CollectFamilies() const;
  const config::Config& config() const { return config_; }
  // Valid between Start() and Stop(); main thread only.
  const Pipeline& pipeline() const { return *pipeline_; }

 private:
  void SamplerLoop();
  SamplerOptions sampler_options() const;
  void StartSampler();
  void StopSampler();
  // A started server for `config`'s endpoint; throws std::runtime_error.
  std::unique_ptr<web::HttpServer> Bind(const config::Config& config, int* port);
  void SetServer(std::unique_ptr<web::HttpServer> server);
  void StopServer();

  config::Config config_;
  collectors::PerfSyscalls& sys_;
  std::string sysfs_root_;

  mutable std::shared_mutex pipeline_mutex_;  // guards pipeline_ swaps vs. Snapshot()
  std::unique_ptr<Pipeline> pipeline_;
  mutable std::mutex status_mutex_;
  ServiceStatus status_;

  // server_ is replaced by the main thread (Serve, Reload, Stop) and read by
  // the HTTP thread (its own statistics, in CollectFamilies).
  mutable std::mutex server_mutex_;
  std::unique_ptr<web::HttpServer> server_;
  int bound_port_ = 0;

  std::thread sampler_;  // the aggregator thread
  PeriodicLoop loop_;
  std::chrono::nanoseconds heartbeat_period_ = std::chrono::seconds(1);
  SamplerOptions sampler_options_;
};

// Writes `port` followed by a newline to `path` atomically (temp + rename).
void WritePortFile(const std::string& path, int port);

}  // namespace pmu::daemon
