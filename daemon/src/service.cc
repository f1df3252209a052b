#include "pmu/daemon/service.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "pmu/daemon/exporter.h"

namespace pmu::daemon {
namespace {

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Connects to the listener and closes the connection at once; errors ignored.
void PokeListener(const config::ListenAddress& listen, int port) {
  if (port <= 0) return;
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (listen.ipv6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET6, listen.host == "::" ? "::1" : listen.host.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, listen.host == "0.0.0.0" ? "127.0.0.1" : listen.host.c_str(),
              &a->sin_addr);
    len = sizeof(*a);
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return;
  (void)connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  close(fd);
}

}  // namespace

Service::Service(config::Config config, collectors::PerfSyscalls& sys, std::string sysfs_root)
    : config_(std::move(config)), sys_(sys), sysfs_root_(std::move(sysfs_root)) {
  status_.last_reload_success_unix_seconds = UnixSeconds();
}

Service::~Service() { Stop(); }

void Service::Start() {
  pipeline_ = std::make_unique<Pipeline>(config_, sys_, sysfs_root_, nullptr);
  pipeline_->SampleOnce();
}

void Service::SampleOnce() {
  // Only the thread that owns sampling calls this, so the pipeline cannot be
  // swapped underneath (Reload stops the sampler first).
  pipeline_->SampleOnce();
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
  return "http://" + host + ":" + std::to_string(bound_port_) + config_.exporter.metrics_path;
}

std::unique_ptr<prometheus::Exposer> Service::Bind(const config::ExporterConfig& exporter,
                                                   int* port) {
  const std::string address = exporter.listen.ToString();
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(address, 2);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot listen on " + address + ": " + e.what());
  }
  exposer->RegisterCollectable(collectable_, exporter.metrics_path);
  auto ports = exposer->GetListeningPorts();
  *port = ports.empty() ? exporter.listen.port : ports.front();
  if (!exporter.port_file.empty()) WritePortFile(exporter.port_file, *port);
  return exposer;
}

std::vector<prometheus::MetricFamily> Service::CollectFamilies() const {
  std::vector<prometheus::MetricFamily> families;
  {
    std::shared_lock lock(pipeline_mutex_);
    if (pipeline_) {
      families = BuildFamilies(pipeline_->Snapshot());
      for (auto& f : pipeline_->KernelStatsFamilies()) families.push_back(std::move(f));
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
  collectable_ = std::make_shared<MetricsCollectable>([this] { return CollectFamilies(); });
  exposer_ = Bind(config_.exporter, &bound_port_);
  spdlog::info("serving {}", url());
  StartSampler();
}

void Service::StartSampler() {
  {
    std::lock_guard lock(stop_mutex_);
    stop_ = false;
  }
  heartbeat_ns_ = SteadyNanos();
  sampler_ = std::thread([this] { SamplerLoop(); });
}

void Service::StopSampler() {
  {
    std::lock_guard lock(stop_mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (sampler_.joinable()) sampler_.join();
}

std::chrono::nanoseconds Service::SamplerHeartbeatAge() const {
  return std::chrono::nanoseconds(SteadyNanos() - heartbeat_ns_.load());
}

void Service::SamplerLoop() {
  const auto interval = config_.sampling.interval;
  auto next = std::chrono::steady_clock::now() + interval;
  std::unique_lock lock(stop_mutex_);
  for (;;) {
    // Wake at least every heartbeat period so a long interval still proves
    // that this thread is alive and not stuck in a read.
    const auto wake = std::min(next, std::chrono::steady_clock::now() + heartbeat_period_);
    if (stop_cv_.wait_until(lock, wake, [this] { return stop_; })) return;
    const auto now = std::chrono::steady_clock::now();
    if (now >= next) {
      lock.unlock();
      SampleOnce();
      lock.lock();
      next += interval;
      if (next < std::chrono::steady_clock::now()) {
        next = std::chrono::steady_clock::now() + interval;  // fell behind: no burst
      }
    }
    heartbeat_ns_ = SteadyNanos();
  }
}

void Service::RecordFailedReload() {
  std::lock_guard lock(status_mutex_);
  status_.last_reload_successful = false;
}

void Service::Reload(const config::Config& next) {
  StopSampler();
  // Everything that can fail happens before anything is swapped, so a
  // failure leaves the old configuration running untouched.
  std::unique_ptr<Pipeline> fresh;
  std::unique_ptr<prometheus::Exposer> exposer;
  int port = bound_port_;
  try {
    pipeline_->SampleOnce();  // the latest deltas, so carried totals are current
    const AggregateSnapshot last = pipeline_->Snapshot();
    fresh = std::make_unique<Pipeline>(next, sys_, sysfs_root_, &last);
    fresh->SampleOnce();
    const bool rebind = !(next.exporter.listen == config_.exporter.listen) ||
                        next.exporter.metrics_path != config_.exporter.metrics_path;
    if (rebind && exposer_) {
      // Free the old address first when only the path changes.
      if (next.exporter.listen == config_.exporter.listen) StopExposer();
      exposer = Bind(next.exporter, &port);
    } else if (!next.exporter.port_file.empty() &&
               next.exporter.port_file != config_.exporter.port_file) {
      WritePortFile(next.exporter.port_file, bound_port_);
    }
  } catch (const std::exception&) {
    RecordFailedReload();
    if (!exposer_ && collectable_) exposer_ = Bind(config_.exporter, &bound_port_);
    StartSampler();
    throw;
  }
  {
    std::unique_lock lock(pipeline_mutex_);
    pipeline_ = std::move(fresh);  // old fds close here
  }
  if (exposer) {
    StopExposer();
    exposer_ = std::move(exposer);
    bound_port_ = port;
  }
  config_ = next;
  {
    std::lock_guard lock(status_mutex_);
    status_.last_reload_successful = true;
    status_.last_reload_success_unix_seconds = UnixSeconds();
  }
  spdlog::info("configuration reloaded from {}; serving {}", config_.source, url());
  StartSampler();
}

// civetweb's master thread notices a stop only when its poll() on the
// listening socket returns, which can take up to a second on an idle server
// (civetweb 1.15 as shipped in Debian 12). Loopback connections made while
// the Exposer is being destroyed wake it at once, so SIGTERM is honoured in
// milliseconds.
void Service::StopExposer() {
  if (!exposer_) return;
  std::atomic<bool> done{false};
  const config::ListenAddress listen = config_.exporter.listen;
  const int port = bound_port_;
  std::thread waker([&done, listen, port] {
    while (!done.load()) {
      PokeListener(listen, port);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  exposer_.reset();
  done = true;
  waker.join();
}

void Service::Stop() {
  StopSampler();
  StopExposer();
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
