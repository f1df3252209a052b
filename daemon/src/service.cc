#include "pmu/daemon/service.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "pmu/attribution/attribution.h"
#include "pmu/collectors/cpu_counters.h"
#include "pmu/metrics/cardinality.h"
#include "pmu/web/auth.h"
#include "pmu/web/http_server.h"

namespace pmu::daemon {
namespace {

double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string MetricsPageHtml(const std::string& metrics_path) {
  return "<!DOCTYPE html><html><head><title>pmu-exporter</title></head><body>"
         "<h1>pmu-exporter</h1><p><a href=\"" +
         web::HtmlEscape(metrics_path) + "\">Metrics</a></p></body></html>\n";
}

// Settings that only a new server (a new socket) can apply.
bool SameEndpoint(const config::Config& a, const config::Config& b) {
  return a.exporter.listen == b.exporter.listen && a.web == b.web;
}

void AddEndpoint(metrics::EndpointStats& into, const web::HttpServer::Stats& s) {
  into.requests += s.requests;
  into.connections_accepted += s.connections_accepted;
  into.connections_rejected += s.connections_rejected;
  into.auth_failures += s.auth_failures;
  into.timeouts += s.timeouts;
}

}  // namespace

Service::Service(config::Config config, collectors::PerfSyscalls& sys, std::string root)
    : config_(std::move(config)),
      sys_(sys),
      root_(std::move(root)),
      metrics_path_(config_.exporter.metrics_path) {
  status_.last_reload_success_unix_seconds = UnixSeconds();
}

Service::~Service() { Stop(); }

sampling::PipelineOptions Service::PipelineOptionsFor() const {
  sampling::PipelineOptions options;
  options.sampler = sampler_options_;
  options.root = root_;
  options.heartbeat = heartbeat_period_;
  return options;
}

void Service::Build(const config::Config& config, sampling::Pipeline* previous,
                    const metrics::DerivedEngine* previous_engine,
                    std::unique_ptr<sampling::Pipeline>* pipeline,
                    std::unique_ptr<metrics::DerivedEngine>* engine,
                    std::unique_ptr<attribution::CgroupAttribution>* cgroups) {
  auto fresh = std::make_unique<sampling::Pipeline>(config, sys_, PipelineOptionsFor(), previous);
  // A host where nothing may be opened must not look like a host without a
  // PMU: refuse to start (or to reload) with what is missing.
  const collectors::EventPlan& plan = fresh->plan();
  if (!plan.events.empty() && plan.SupportedCount() == 0 && !plan.permission_problem.empty()) {
    throw std::runtime_error("none of the " + std::to_string(plan.events.size()) +
                             " configured events can be opened: " + plan.permission_problem);
  }
  if (!plan.permission_problem.empty()) {
    spdlog::warn("some events cannot be opened: {}", plan.permission_problem);
  }
  auto derived = std::make_unique<metrics::DerivedEngine>(config, fresh->plan(),
                                                          fresh->selected_cpus(), previous_engine);
  fresh->AddObserver(derived.get());
  // [cgroups]: its own counters and rescans, read after every round.
  std::unique_ptr<attribution::CgroupAttribution> attributed;
  std::vector<std::shared_ptr<const metrics::FamilySource>> extra;
  if (config.cgroups.enabled) {
    attribution::AttributionOptions options;
    options.cpus = fresh->selected_cpus();
    options.other_fds = fresh->open_fds() + static_cast<size_t>(config.web.max_connections) + 256;
    options.sys = &sys_;
    options.previous = previous != nullptr ? cgroups_.get() : nullptr;  // totals carry over
    attributed = attribution::CgroupAttribution::Create(config, fresh->plan(), options);
    if (attributed) {
      fresh->AddObserver(attributed.get());
      extra.push_back(attribution::EstimateCgroupFamilies(config, fresh->plan()));
    }
  }
  fresh->SampleNow();  // the first reading; primes the /proc/stat-based metrics
  const auto first = fresh->latest();
  metrics::CheckCardinality(
      config, metrics::EstimateSeries(config, first->plan, fresh->selected_cpus(), &first->kernel,
                                      std::move(extra)));
  *pipeline = std::move(fresh);
  *engine = std::move(derived);
  *cgroups = std::move(attributed);
}

void Service::StartPublishing() {
  const metrics::DerivedEngine& engine = *derived_;
  const attribution::CgroupAttribution* cgroups = cgroups_.get();
  pipeline_->SetPublisher(
      [this, &engine, cgroups](std::shared_ptr<const sampling::Snapshot> snapshot) {
        Publish(snapshot, engine, cgroups);
      });
  Publish(pipeline_->latest(), engine, cgroups);
}

void Service::Publish(const std::shared_ptr<const sampling::Snapshot>& snapshot,
                      const metrics::DerivedEngine& engine,
                      const attribution::CgroupAttribution* cgroups) {
  auto out = std::make_shared<metrics::ExportSnapshot>();
  out->sampling = snapshot;
  out->derived = engine.TakeSnapshot();
  if (cgroups != nullptr) out->extra.push_back(cgroups->Families());
  {
    std::lock_guard lock(status_mutex_);
    out->service = status_;
  }
  out->endpoint = EndpointTotals();
  std::lock_guard lock(latest_mutex_);
  latest_ = std::move(out);
}

// Totals over every server since Serve(), also while none listens (the
// counters continue; the gauge says the endpoint is down).
std::optional<metrics::EndpointStats> Service::EndpointTotals() const {
  if (!serving_) return std::nullopt;
  std::lock_guard lock(server_mutex_);
  metrics::EndpointStats totals = retired_endpoint_;
  if (server_) AddEndpoint(totals, server_->stats());
  totals.listening = endpoint_up_;
  totals.bind_failures = bind_failures_;
  return totals;
}

void Service::Start() {
  std::unique_lock lock(pipeline_mutex_);
  Build(config_, nullptr, nullptr, &pipeline_, &derived_, &cgroups_);
  StartPublishing();
}

void Service::SampleOnce() { pipeline_->SampleNow(); }

std::shared_ptr<const metrics::ExportSnapshot> Service::Latest() const {
  std::lock_guard lock(latest_mutex_);
  return latest_;
}

std::string Service::RenderMetrics() const {
  const auto latest = Latest();
  return latest ? metrics::RenderText(*latest) : std::string();
}

std::shared_ptr<metrics::Rendered> Service::Rendering() {
  {
    // A scrape drains the rings when the snapshot is older than an interval
    // (the aggregator otherwise drains only every DrainPeriod()).
    std::shared_lock lock(pipeline_mutex_);
    if (pipeline_) pipeline_->Fresh(kScrapeRoundWait);
  }
  auto latest = Latest();
  std::lock_guard lock(render_mutex_);
  if (!rendered_ || rendered_->snapshot() != latest) {
    rendered_ = std::make_shared<metrics::Rendered>(std::move(latest), rendered_size_);
  }
  return rendered_;
}

std::string Service::url() const {
  const auto& l = config_.exporter.listen;
  std::string host = l.ipv6 ? "[" + l.host + "]" : l.host;
  return std::string(config_.web.tls_cert_file.empty() ? "http" : "https") + "://" + host + ":" +
         std::to_string(bound_port_) + config_.exporter.metrics_path;
}

std::unique_ptr<web::HttpServer> Service::MakeServer(const config::Config& config) {
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
  // The path is read per request, so a reload that changes only
  // metrics_path needs no new socket.
  auto handler = [this](const web::HttpRequest& request) {
    const std::string metrics_path = MetricsPath();
    web::HttpResponse response;
    if (request.path == metrics_path) {
      // One rendering (and one gzip copy) per snapshot, shared by every request.
      auto rendered = Rendering();
      response.shared_body = rendered->Text();
      rendered_size_ = response.shared_body->size();
      response.gzip_body = [rendered] {
        return rendered->Compressed([](const std::string& text) {
          auto zipped = web::GzipCompress(text);
          return zipped ? std::move(*zipped) : std::string();
        });
      };
    } else if (request.path == "/") {
      response.content_type = "text/html; charset=utf-8";
      response.body = MetricsPageHtml(metrics_path);
    } else {
      response.status = 404;
      response.body = "not found; metrics are at " + metrics_path + "\n";
    }
    return response;
  };
  return std::make_unique<web::HttpServer>(options, handler, authenticator);
}

std::unique_ptr<web::HttpServer> Service::Bind(const config::Config& config, int* port) {
  if (before_bind_) before_bind_();
  auto server = MakeServer(config);
  *port = server->port();
  if (!config.exporter.port_file.empty()) WritePortFile(config.exporter.port_file, *port);
  server->Start();
  return server;
}

std::string Service::MetricsPath() const {
  std::lock_guard lock(status_mutex_);
  return metrics_path_;
}

void Service::SetMetricsPath(const std::string& path) {
  std::lock_guard lock(status_mutex_);
  metrics_path_ = path;
}

void Service::Serve() {
  SetServer(Bind(config_, &bound_port_));
  endpoint_config_ = config_;
  endpoint_up_ = true;
  serving_ = true;
  spdlog::info("serving {}", url());
  pipeline_->Start();
}

std::unique_ptr<web::HttpServer> Service::Rebind(const config::Config& next, int* port) {
  if (!server_) return Bind(next, port);  // nothing listens: nothing to free first
  if (next.exporter.listen != endpoint_config_->exporter.listen) {
    // Another address: the new server listens and serves before the caller
    // closes the old one, so no scrape finds neither.
    return Bind(next, port);
  }
  // The same address must be freed before it can be bound again. First
  // prove that the new settings load (certificate, key, limits) on a free
  // port of the same host, so that once the old server is closed only a
  // lost race for the port can fail.
  config::Config bind_to = next;
  {
    config::Config probe = next;
    probe.exporter.listen.port = 0;
    MakeServer(probe);
  }
  // An ephemeral port stays the port already handed out.
  bind_to.exporter.listen.port = static_cast<uint16_t>(bound_port_);
  StopServer();
  try {
    return Bind(bind_to, port);
  } catch (const std::exception& e) {
    // Put the old endpoint back; if even that fails the daemon says so and
    // keeps trying (RetryEndpoint).
    RestoreEndpoint();
    throw;
  }
}

void Service::RestoreEndpoint() {
  config::Config old = *endpoint_config_;
  old.exporter.listen.port = static_cast<uint16_t>(bound_port_);
  try {
    SetServer(Bind(old, &bound_port_));
  } catch (const std::exception& e) {
    EndpointLost(e.what());
  }
}

void Service::EndpointLost(const std::string& why) {
  endpoint_config_.reset();
  endpoint_up_ = false;
  ++bind_failures_;
  spdlog::critical(
      "the metrics endpoint is DOWN: no socket listens ({}); retrying every second until "
      "{} can be bound",
      why, config_.exporter.listen.ToString());
  last_retry_log_ = std::chrono::steady_clock::now();
}

bool Service::RetryEndpoint() {
  if (!serving_ || server_) return true;
  config::Config bind_to = config_;
  if (bound_port_ != 0 && bind_to.exporter.listen.port == 0) {
    bind_to.exporter.listen.port = static_cast<uint16_t>(bound_port_);
  }
  try {
    SetServer(Bind(bind_to, &bound_port_));
  } catch (const std::exception& e) {
    ++bind_failures_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_retry_log_ >= std::chrono::seconds(30)) {
      spdlog::critical("the metrics endpoint is still DOWN: {}", e.what());
      last_retry_log_ = now;
    }
    return false;
  }
  endpoint_config_ = bind_to;
  endpoint_up_ = true;
  spdlog::warn("the metrics endpoint is back: serving {}", url());
  return true;
}

bool Service::endpoint_listening() const {
  std::lock_guard lock(server_mutex_);
  return server_ != nullptr;
}

std::chrono::nanoseconds Service::PipelineHeartbeatAge() const {
  std::shared_lock lock(pipeline_mutex_);
  const int64_t now = collectors::MonotonicNanos();
  if (!pipeline_) return std::chrono::nanoseconds(0);
  return std::chrono::nanoseconds(now - pipeline_->OldestHeartbeatNs());
}

void Service::RecordFailedReload() {
  metrics::ServiceFacts facts;
  {
    std::lock_guard lock(status_mutex_);
    status_.last_reload_successful = false;
    facts = status_;
  }
  // Scrapes see the failure at once, not only after the next round.
  std::lock_guard lock(latest_mutex_);
  if (!latest_) return;
  auto updated = std::make_shared<metrics::ExportSnapshot>(*latest_);
  updated->service = facts;
  latest_ = std::move(updated);
}

void Service::Reload(const config::Config& next) {
  const bool serving = serving_;
  // The samplers read once more on their own threads and a last round takes
  // those readings in, so the totals carried over are current.
  pipeline_->Stop(/*final_reading=*/serving);
  if (!serving) pipeline_->SampleNow();
  // Everything that can fail happens before anything is swapped, so a
  // failure leaves the old configuration running (and its endpoint serving,
  // unless even rebinding the old one failed: then RetryEndpoint goes on).
  std::unique_ptr<sampling::Pipeline> fresh;
  std::unique_ptr<metrics::DerivedEngine> engine;
  std::unique_ptr<attribution::CgroupAttribution> cgroups;
  std::unique_ptr<web::HttpServer> server;
  int port = bound_port_;
  try {
    Build(next, pipeline_.get(), derived_.get(), &fresh, &engine, &cgroups);
    // Compared with what really listens: after a lost endpoint there is
    // nothing to compare with, and the endpoint is bound anew.
    const bool rebind = serving && (!endpoint_config_ || !SameEndpoint(*endpoint_config_, next));
    if (rebind) {
      server = Rebind(next, &port);
    } else if (serving && !next.exporter.port_file.empty() &&
               next.exporter.port_file != config_.exporter.port_file) {
      WritePortFile(next.exporter.port_file, bound_port_);
    }
  } catch (const std::exception&) {
    RecordFailedReload();
    if (serving) pipeline_->Start();
    throw;
  }
  {
    std::unique_lock lock(pipeline_mutex_);
    pipeline_ = std::move(fresh);  // old fds close here
    derived_ = std::move(engine);
    cgroups_ = std::move(cgroups);
  }
  if (server) {
    // Only now is the old server closed: the new one already serves.
    StopServer();
    SetServer(std::move(server));
    bound_port_ = port;
    endpoint_config_ = next;
    endpoint_up_ = true;
  }
  config_ = next;
  SetMetricsPath(next.exporter.metrics_path);
  {
    std::lock_guard lock(status_mutex_);
    status_.last_reload_successful = true;
    status_.last_reload_success_unix_seconds = UnixSeconds();
  }
  spdlog::info("configuration reloaded from {}; serving {}", config_.source, url());
  StartPublishing();
  if (serving) pipeline_->Start();
}

void Service::SetServer(std::unique_ptr<web::HttpServer> server) {
  std::lock_guard lock(server_mutex_);
  server_ = std::move(server);
}

// The old server is stopped outside the lock: its thread may be serving a
// request; its counts join the totals of the servers before it.
void Service::StopServer() {
  std::unique_ptr<web::HttpServer> old;
  {
    std::lock_guard lock(server_mutex_);
    old = std::move(server_);
  }
  if (!old) return;
  old->Stop();
  std::lock_guard lock(server_mutex_);
  AddEndpoint(retired_endpoint_, old->stats());
}

void Service::Stop() {
  serving_ = false;
  if (pipeline_) pipeline_->Stop();
  StopServer();
  std::unique_lock lock(pipeline_mutex_);
  pipeline_.reset();  // closes every perf fd
  derived_.reset();
  cgroups_.reset();
}

void WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  const std::string text = std::to_string(port) + "\n";
  // Every failure removes the temporary file and names the reason (a full
  // disk reads "No space left on device").
  const auto fail = [&tmp](const std::string& what, int err) {
    unlink(tmp.c_str());
    throw std::runtime_error("cannot " + what + " port file " + tmp + ": " + std::strerror(err));
  };
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error("cannot create port file " + tmp + ": " + std::strerror(errno));
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      close(fd);
      fail("write", err);
    }
    written += static_cast<size_t>(n);
  }
  if (close(fd) != 0) fail("write", errno);  // NFS and friends report late
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    unlink(tmp.c_str());
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + std::strerror(err));
  }
}

}  // namespace pmu::daemon
