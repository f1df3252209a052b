// Service: the running exporter. Wires collectors, the aggregator and the
// Prometheus endpoint together; owns the sampler thread.
//
// Life cycle (main thread): construct -> Start() -> Serve() -> ... -> Stop().
// Start() probes events, opens per-CPU counters and takes the first reading;
// Serve() binds the HTTP endpoint and starts sampling every interval.
// Stop() is idempotent, returns within one sampler tick, closes every perf fd.
//
// Thread safety: the life-cycle calls belong to one thread; Snapshot() may be
// called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pmu/collectors/cpu_counters.h"
#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/config/config.h"
#include "pmu/daemon/aggregator.h"

namespace prometheus {
class Exposer;
}

namespace pmu::daemon {

class MetricsCollectable;

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
  void Stop();

  int bound_port() const { return bound_port_; }
  std::string url() const;
  AggregateSnapshot Snapshot() const;
  const collectors::EventPlan& plan() const { return *plan_; }
  const config::Config& config() const { return config_; }

 private:
  void SamplerLoop();
  void StopExposer();

  config::Config config_;
  collectors::PerfSyscalls& sys_;
  std::string sysfs_root_;
  std::shared_ptr<const collectors::EventPlan> plan_;
  std::vector<std::unique_ptr<collectors::CpuCounters>> counters_;
  std::unique_ptr<Aggregator> aggregator_;
  std::shared_ptr<MetricsCollectable> collectable_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int bound_port_ = 0;

  std::thread sampler_;
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
};

// Writes `port` followed by a newline to `path` atomically (temp + rename).
void WritePortFile(const std::string& path, int port);

}  // namespace pmu::daemon
