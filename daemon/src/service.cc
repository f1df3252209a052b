#include "pmu/daemon/service.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>

#include "pmu/web/auth.h"
#include "pmu/daemon/exporter.h"
#include "pmu/web/http_server.h"

namespace pmu::daemon {
namespace {

double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string MetricsPageHtml(const std::string& metrics_path) {
  return "<!DOCTYPE html><html><head><title>pmu-exporter</title></head><body>"
         "<h1>pmu-exporter</h1><p><a href=\"" + metrics_path + "\">Metrics</a></p></body></html>\n";
}

}  // namespace

Service::Service(config::Config config, collectors::PerfSyscalls& sys, std::string sysfs_root)
    : config_(std::move(config)), sys_(sys), sysfs_root_(std::move(sysfs_root)) {
  status_.last_reload_success_unix_seconds = UnixSeconds();
}

Service::~Service() { Stop(); }

SamplerOptions Service::sampler_options() const {
  SamplerOptions options = sampler_options_;
  options.heartbeat = heartbeat_period_;
  return options;
}

void Service::Start() {
  pipeline_ = std::make_unique<Pipeline>(config_, sys_, sysfs_root_, nullptr, sampler_options());
  pipeline_->SampleOnce();
  pipeline_->ProcStatTick();  // primes the /proc/stat-based derived metrics
}

void Service::SampleOnce() {
  // Only while no sampler threads run (start-up, --once): the pipeline cannot
  // be swapped underneath, Reload stops everything first.
  pipeline_->SampleOnce();
  pipeline_->ProcStatTick();
}

AggregateSnapshot Service::Snapshot() const {
  std::shared_lock lock(pipeline_mutex_);
  if (!pipeline_) return {};
  return pipeline_->Snapshot();
}

ServiceStatus Service::Status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

std::string Service::url() const {
  const auto& l = config_.exporter.listen;
  std::string host = l.ipv6 ? "[" + l.host + "]" : l.host;
  return std::string(config_.web.tls_cert_file.empty() ? "http" : "https") + "://" + host + ":" +
         std::to_string(bound_port_) + config_.exporter.metrics_path;
}

std::unique_ptr<web::HttpServer> Service::Bind(const config::Config& config, int* port) {
  web::HttpServerOptions options;
  options.host = config.exporter.listen.host;
  options.ipv6 = config.exporter.listen.ipv6;
  options.port = config.exporter.listen.port;
  options.tls_cert_file = config.web.tls_cert_file;
  options.tls_key_file = config.web.tls_key_file;
  options.max_connections = static_cast<size_t>(config.web.max_connections);
  options.max_request_bytes = static_cast<size_t>(config.web.max_request_bytes);
  options.request_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(config.web.request_timeout);
  options.idle_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(config.web.idle_timeout);
  web::HttpServer::Authenticator authenticator;
  if (!config.web.users.empty()) {
    auto checker = std::make_shared<web::PasswordChecker>(config.web.users);
    authenticator = [checker](const std::string& user, const std::string& password) {
      return checker->Check(user, password);
    };
  }
  const std::string metrics_path = config.exporter.metrics_path;
  auto handler = [this, metrics_path](const web::HttpRequest& request) {
    web::HttpResponse response;
    if (request.path == metrics_path) {
      response.body = SerializeText(CollectFamilies());
    } else if (request.path == "/") {
      response.content_type = "text/html; charset=utf-8";
      response.body = MetricsPageHtml(metrics_path);
    } else {
      response.status = 404;
      response.body = "not found; metrics are at " + metrics_path + "\n";
    }
    return response;
  };
  auto server = std::make_unique<web::HttpServer>(options, handler, authenticator);
  *port = server->port();
  if (!config.exporter.port_file.empty()) WritePortFile(config.exporter.port_file, *port);
  server->Start();
  return server;
}

std::vector<prometheus::MetricFamily> Service::CollectFamilies() const {
  std::vector<prometheus::MetricFamily> families;
  {
    std::shared_lock lock(pipeline_mutex_);
    if (pipeline_) {
      const AggregateSnapshot snapshot = pipeline_->Snapshot();
      families = BuildFamilies(snapshot);
      for (auto& f : BuildPipelineFamilies(pipeline_->Stats(), snapshot)) {
        families.push_back(std::move(f));
      }
      for (auto& f : pipeline_->KernelStatsFamilies()) families.push_back(std::move(f));
      for (auto& f : pipeline_->DerivedFamilies()) families.push_back(std::move(f));
    }
  }
  std::optional<web::HttpServer::Stats> http_stats;
  {
    std::lock_guard lock(server_mutex_);
    if (server_) http_stats = server_->stats();
  }
  if (http_stats) {
    const web::HttpServer::Stats& http = *http_stats;
    const struct {
      const char* name;
      const char* help;
      uint64_t value;
    } counters[] = {
        {"pmu_exporter_http_requests_total", "HTTP requests answered by the metrics endpoint.",
         http.requests},
        {"pmu_exporter_http_connections_total", "Connections accepted by the metrics endpoint.",
         http.connections_accepted},
        {"pmu_exporter_http_connections_rejected_total",
         "Connections closed at once because [web] max_connections were open.",
         http.connections_rejected},
        {"pmu_exporter_http_auth_failures_total",
         "Requests refused for missing or wrong credentials.", http.auth_failures},
        {"pmu_exporter_http_timeouts_total",
         "Connections closed because a request or TLS handshake did not complete in time.",
         http.timeouts},
    };
    for (const auto& c : counters) {
      families.push_back(CounterFamily(c.name, c.help, static_cast<double>(c.value)));
    }
  }
  const ServiceStatus st = Status();
  families.push_back(GaugeFamily("pmu_exporter_config_last_reload_successful",
                                 "1 if the last configuration load (start-up or SIGHUP) "
                                 "succeeded, 0 if it failed and the previous one is in use.",
                                 st.last_reload_successful ? 1 : 0));
  families.push_back(GaugeFamily("pmu_exporter_config_last_reload_success_timestamp_seconds",
                                 "Unix time of the last successful configuration load.",
                                 st.last_reload_success_unix_seconds));
  return families;
}

void Service::Serve() {
  SetServer(Bind(config_, &bound_port_));
  spdlog::info("serving {}", url());
  pipeline_->StartSamplers();
  StartSampler();
}

void Service::StartSampler() {
  loop_.Reset();
  sampler_ = std::thread([this] { SamplerLoop(); });
}

void Service::StopSampler() {
  loop_.RequestStop();
  if (sampler_.joinable()) sampler_.join();
}

std::chrono::nanoseconds Service::SamplerHeartbeatAge() const {
  // The aggregator thread and every sampler thread must all be alive.
  int64_t oldest = loop_.heartbeat_ns();
  {
    std::shared_lock lock(pipeline_mutex_);
    if (pipeline_) oldest = std::min(oldest, pipeline_->OldestHeartbeatNs());
  }
  return std::chrono::nanoseconds(collectors::MonotonicNanos() - oldest);
}

// The aggregator thread: every interval it notices CPU hotplug, drains the
// samplers' rings into the aggregator and feeds /proc/stat-based metrics.
void Service::SamplerLoop() {
  loop_.Run(config_.sampling.interval, heartbeat_period_, [this] {
    pipeline_->CheckHotplug();
    pipeline_->Drain();
    pipeline_->ProcStatTick();
  });
}

void Service::RecordFailedReload() {
  std::lock_guard lock(status_mutex_);
  status_.last_reload_successful = false;
}

void Service::Reload(const config::Config& next) {
  StopSampler();
  pipeline_->StopSamplers();
  // Everything that can fail happens before anything is swapped, so a
  // failure leaves the old configuration running untouched.
  std::unique_ptr<Pipeline> fresh;
  std::unique_ptr<web::HttpServer> server;
  int port = bound_port_;
  try {
    pipeline_->SampleOnce();  // the latest deltas, so carried totals are current
    const AggregateSnapshot last = pipeline_->Snapshot();
    fresh = std::make_unique<Pipeline>(next, sys_, sysfs_root_, &last, sampler_options());
    fresh->SampleOnce();
    const bool same_address = next.exporter.listen == config_.exporter.listen;
    const bool rebind = !same_address ||
                        next.exporter.metrics_path != config_.exporter.metrics_path ||
                        !(next.web == config_.web);
    if (rebind && server_) {
      config::Config bind_to = next;
      if (same_address) {
        // The same address must be freed before it can be bound again; an
        // ephemeral port stays the port already handed out.
        StopServer();
        bind_to.exporter.listen.port = static_cast<uint16_t>(bound_port_);
      }
      server = Bind(bind_to, &port);
    } else if (!next.exporter.port_file.empty() &&
               next.exporter.port_file != config_.exporter.port_file) {
      WritePortFile(next.exporter.port_file, bound_port_);
    }
  } catch (const std::exception&) {
    RecordFailedReload();
    if (!server_) SetServer(Bind(config_, &bound_port_));
    pipeline_->StartSamplers();
    StartSampler();
    throw;
  }
  {
    std::unique_lock lock(pipeline_mutex_);
    pipeline_ = std::move(fresh);  // old fds close here
  }
  if (server) {
    StopServer();
    SetServer(std::move(server));
    bound_port_ = port;
  }
  config_ = next;
  {
    std::lock_guard lock(status_mutex_);
    status_.last_reload_successful = true;
    status_.last_reload_success_unix_seconds = UnixSeconds();
  }
  spdlog::info("configuration reloaded from {}; serving {}", config_.source, url());
  pipeline_->StartSamplers();
  StartSampler();
}

void Service::SetServer(std::unique_ptr<web::HttpServer> server) {
  std::lock_guard lock(server_mutex_);
  server_ = std::move(server);
}

// The old server is stopped outside the lock: its thread may be inside
// CollectFamilies waiting for server_mutex_.
void Service::StopServer() {
  std::unique_ptr<web::HttpServer> old;
  {
    std::lock_guard lock(server_mutex_);
    old = std::move(server_);
  }
  if (old) old->Stop();
}

void Service::Stop() {
  StopSampler();
  if (pipeline_) pipeline_->StopSamplers();
  StopServer();
  std::unique_lock lock(pipeline_mutex_);
  pipeline_.reset();  // closes every perf fd
}

void WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << '\n';
    if (!out.flush()) throw std::runtime_error("cannot write port file " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
}

}  // namespace pmu::daemon
