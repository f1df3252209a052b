// Service: the running exporter. Wires one sampling::Pipeline with its
// metrics::DerivedEngine, publishes what every round measured as an
// immutable metrics::ExportSnapshot, serves it on the endpoint, and applies
// reloads.
//
// Life cycle (main thread): construct -> Start() -> Serve() -> [Reload()]...
// -> Stop(). Start() builds the pipeline, takes the first reading and checks
// the configuration's cardinality; Serve() binds the endpoint and starts the
// pipeline's threads. Stop() is idempotent, returns within milliseconds and
// closes every perf fd.
//
// Thread safety: Start/SampleOnce/Serve/Reload/RecordFailedReload/Stop
// belong to one thread (main). Latest, RenderMetrics, PipelineHeartbeatAge,
// bound_port and url may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>

#include "pmu/collectors/perf_syscalls.h"
#include "pmu/config/config.h"
#include "pmu/metrics/derived.h"
#include "pmu/metrics/family_source.h"
#include "pmu/metrics/rendered.h"
#include "pmu/sampling/pipeline.h"

namespace pmu::web {
class HttpServer;
}  // namespace pmu::web
namespace pmu::attribution {
class CgroupAttribution;
}  // namespace pmu::attribution

namespace pmu::daemon {

// How long a scrape waits at most for the round it asked for.
inline constexpr std::chrono::milliseconds kScrapeRoundWait{50};

class Service {
 public:
  explicit Service(config::Config config,
                   collectors::PerfSyscalls& sys = collectors::DefaultPerfSyscalls(),
                   std::string root = "/");
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Throws std::runtime_error on a fatal start-up problem (nothing online,
  // more series than [exporter] max_series, ...).
  void Start();
  // One synchronous round (--once). REQUIRES: Start() and not serving.
  void SampleOnce();
  // Binds the endpoint (throws std::runtime_error naming the address on
  // failure), writes the port file, starts the pipeline's threads.
  void Serve();
  // Applies a validated configuration. On failure (the new address cannot
  // be bound, too many series, ...) throws std::runtime_error and the old
  // configuration keeps running untouched. Records the outcome either way.
  void Reload(const config::Config& next);
  // Records a reload that failed before reaching Reload() (invalid file).
  void RecordFailedReload();
  // While serving without a listening socket (a rollback could not rebind
  // the old endpoint), tries to bind the running configuration's endpoint
  // again; true when an endpoint listens afterwards. The main loop calls it
  // every tick; failures are logged at critical level (rate-limited) and
  // counted in pmu_exporter_endpoint_bind_failures_total.
  bool RetryEndpoint();
  // True while a server listens (any thread).
  bool endpoint_listening() const;
  void Stop();

  // How often every pipeline thread proves it is alive even when the
  // sampling interval is longer (set before Start(); the watchdog uses it).
  void set_heartbeat_period(std::chrono::nanoseconds period) { heartbeat_period_ = period; }
  // Test seam: runs just before every bind of the endpoint (a test occupies
  // the port there to make the bind fail). Empty in the daemon.
  void set_before_bind(std::function<void()> hook) { before_bind_ = std::move(hook); }
  // Sampler options (tests: fake rdpmc source); set before Start().
  void set_sampler_options(sampling::SamplerOptions options) { sampler_options_ = options; }
  // Time since the least recent heartbeat of the aggregator thread and the
  // sampler threads; the watchdog is fed only while this stays small.
  std::chrono::nanoseconds PipelineHeartbeatAge() const;

  int bound_port() const { return bound_port_; }
  std::string url() const;
  // What /metrics serves now (null before Start()).
  std::shared_ptr<const metrics::ExportSnapshot> Latest() const;
  // The text exposition of Latest().
  std::string RenderMetrics() const;
  const config::Config& config() const { return config_; }
  // Valid between Start() and Stop(); main thread only.
  const sampling::Pipeline& pipeline() const { return *pipeline_; }

 private:
  sampling::PipelineOptions PipelineOptionsFor() const;
  // A pipeline and its derived engine for `config`, first round taken and
  // cardinality checked, not yet publishing; throws std::runtime_error.
  void Build(const config::Config& config, sampling::Pipeline* previous,
             const metrics::DerivedEngine* previous_engine,
             std::unique_ptr<sampling::Pipeline>* pipeline,
             std::unique_ptr<metrics::DerivedEngine>* engine,
             std::unique_ptr<attribution::CgroupAttribution>* cgroups);
  // Makes `pipeline_`/`derived_` the published ones.
  void StartPublishing();
  void Publish(const std::shared_ptr<const sampling::Snapshot>& snapshot,
               const metrics::DerivedEngine& engine, const attribution::CgroupAttribution* cgroups);
  // A bound, not yet started server for `config`'s endpoint; throws
  // std::runtime_error.
  std::unique_ptr<web::HttpServer> MakeServer(const config::Config& config);
  // A started server for `config`'s endpoint, port file written; throws
  // std::runtime_error.
  std::unique_ptr<web::HttpServer> Bind(const config::Config& config, int* port);
  // A started server for `next` replacing the current one. On another
  // address the current one keeps serving (the caller closes it after the
  // swap); on the same address it is closed only after `next`'s settings
  // proved to load, and put back if binding fails (or the loss recorded).
  std::unique_ptr<web::HttpServer> Rebind(const config::Config& next, int* port);
  void RestoreEndpoint();
  void EndpointLost(const std::string& why);
  std::string MetricsPath() const;
  void SetMetricsPath(const std::string& path);
  void SetServer(std::unique_ptr<web::HttpServer> server);
  void StopServer();
  std::optional<metrics::EndpointStats> EndpointTotals() const;

  config::Config config_;
  collectors::PerfSyscalls& sys_;
  std::string root_;
  std::chrono::nanoseconds heartbeat_period_ = std::chrono::seconds(1);
  sampling::SamplerOptions sampler_options_;
  std::function<void()> before_bind_;

  // Replaced by the main thread; read by PipelineHeartbeatAge().
  mutable std::shared_mutex pipeline_mutex_;
  std::unique_ptr<sampling::Pipeline> pipeline_;
  std::unique_ptr<metrics::DerivedEngine> derived_;
  std::unique_ptr<attribution::CgroupAttribution> cgroups_;  // [cgroups]; observes pipeline_

  mutable std::mutex status_mutex_;
  metrics::ServiceFacts status_;
  std::string metrics_path_;  // under status_mutex_; read by the server thread

  mutable std::mutex latest_mutex_;
  std::shared_ptr<const metrics::ExportSnapshot> latest_;
  // The exposition of the latest snapshot, rendered once for every request.
  std::shared_ptr<metrics::Rendered> Rendering();
  std::mutex render_mutex_;
  std::shared_ptr<metrics::Rendered> rendered_;
  std::atomic<size_t> rendered_size_{0};  // the last rendering's size, to reserve the next

  // server_ is replaced by the main thread (Serve, Reload, Stop) and read by
  // the aggregator thread (its statistics, in Publish).
  mutable std::mutex server_mutex_;
  std::unique_ptr<web::HttpServer> server_;
  metrics::EndpointStats retired_endpoint_;  // servers replaced by reloads
  int bound_port_ = 0;
  // Main thread only. serving_: between Serve() and Stop(). endpoint_config_:
  // the configuration the listening server was built from; empty while no
  // server listens, so the next reload or retry binds whatever it is given.
  std::atomic<bool> serving_{false};  // read by the aggregator thread too
  std::optional<config::Config> endpoint_config_;
  std::atomic<bool> endpoint_up_{false};
  std::atomic<uint64_t> bind_failures_{0};
  std::chrono::steady_clock::time_point last_retry_log_{};
};

// Writes `port` followed by a newline to `path` atomically (temp + rename).
void WritePortFile(const std::string& path, int port);

}  // namespace pmu::daemon
