#include "pmu/daemon/service.h"

#include <prometheus/exposer.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "pmu/collectors/topology.h"
#include "pmu/daemon/exporter.h"

namespace pmu::daemon {
namespace {

// Connects to the listener and closes the connection at once; errors ignored.
void PokeListener(bool ipv6, const std::string& host, int port) {
  if (port <= 0) return;
  sockaddr_storage ss{};
  socklen_t len = 0;
  std::string target = host;
  if (ipv6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (target == "::") target = "::1";
    inet_pton(AF_INET6, target.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (target == "0.0.0.0") target = "127.0.0.1";
    inet_pton(AF_INET, target.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return;
  (void)connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  close(fd);
}

}  // namespace

Service::Service(config::Config config, collectors::PerfSyscalls& sys, std::string sysfs_root)
    : config_(std::move(config)), sys_(sys), sysfs_root_(std::move(sysfs_root)) {}

Service::~Service() { Stop(); }

void Service::Start() {
  const std::vector<int> online = collectors::OnlineCpus(sysfs_root_);
  const std::vector<int> possible = collectors::PossibleCpus(sysfs_root_);
  std::vector<int> selected;
  if (config_.sampling.all_cpus) {
    selected = online;
  } else {
    for (int cpu : config_.sampling.cpus) {
      if (std::binary_search(online.begin(), online.end(), cpu)) {
        selected.push_back(cpu);
      } else {
        spdlog::warn("cpu {} is configured but offline; it is not sampled", cpu);
      }
    }
  }
  if (selected.empty()) throw std::runtime_error("none of the configured CPUs is online");

  plan_ = std::make_shared<collectors::EventPlan>(
      collectors::BuildEventPlan(config_.events, sys_, selected.front()));
  if (plan_->SupportedCount() == 0) {
    spdlog::warn("none of the {} configured events can be counted on this host; only "
                 "pmu_event_supported is exported",
                 plan_->events.size());
  }

  int slots = 1;
  for (int cpu : possible) slots = std::max(slots, cpu + 1);
  for (int cpu : selected) slots = std::max(slots, cpu + 1);
  aggregator_ = std::make_unique<Aggregator>(plan_, slots);

  size_t fds = 0;
  for (int cpu : selected) {
    counters_.push_back(std::make_unique<collectors::CpuCounters>(sys_, *plan_, cpu, 1));
    fds += counters_.back()->open_fds();
  }
  spdlog::info("counting {} of {} events in {} groups on {} CPUs ({} perf fds), every {}",
               plan_->SupportedCount(), plan_->events.size(), plan_->groups.size(),
               selected.size(), fds, config::FormatDuration(config_.sampling.interval));
  SampleOnce();
}

void Service::SampleOnce() {
  for (auto& cpu : counters_) {
    cpu->ReadAll([this](const collectors::GroupSample& s) { aggregator_->Ingest(s); });
  }
}

AggregateSnapshot Service::Snapshot() const {
  if (!aggregator_) return {};
  return aggregator_->TakeSnapshot();
}

std::string Service::url() const {
  const auto& l = config_.exporter.listen;
  std::string host = l.ipv6 ? "[" + l.host + "]" : l.host;
  return "http://" + host + ":" + std::to_string(bound_port_) + config_.exporter.metrics_path;
}

void Service::Serve() {
  collectable_ = std::make_shared<MetricsCollectable>([this] { return Snapshot(); });
  const std::string address = config_.exporter.listen.ToString();
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, 2);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot listen on " + address + ": " + e.what());
  }
  exposer_->RegisterCollectable(collectable_, config_.exporter.metrics_path);
  auto ports = exposer_->GetListeningPorts();
  bound_port_ = ports.empty() ? config_.exporter.listen.port : ports.front();
  if (!config_.exporter.port_file.empty()) WritePortFile(config_.exporter.port_file, bound_port_);
  spdlog::info("serving {}", url());
  {
    std::lock_guard lock(stop_mutex_);
    stop_ = false;
  }
  sampler_ = std::thread([this] { SamplerLoop(); });
}

void Service::SamplerLoop() {
  const auto interval = config_.sampling.interval;
  auto next = std::chrono::steady_clock::now() + interval;
  std::unique_lock lock(stop_mutex_);
  while (!stop_cv_.wait_until(lock, next, [this] { return stop_; })) {
    lock.unlock();
    SampleOnce();
    lock.lock();
    next += interval;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now + interval;  // fell behind: do not burst
  }
}

void Service::Stop() {
  {
    std::lock_guard lock(stop_mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (sampler_.joinable()) sampler_.join();
  StopExposer();
  counters_.clear();  // closes every perf fd
}

// civetweb's master thread notices a stop only when its poll() on the
// listening socket returns, which can take up to a second on an idle server
// (civetweb 1.15 as shipped in Debian 12). Loopback connections made while
// the Exposer is being destroyed wake it at once, so SIGTERM is honoured in
// milliseconds.
void Service::StopExposer() {
  if (!exposer_) return;
  std::atomic<bool> done{false};
  std::thread waker([this, &done] {
    const auto& listen = config_.exporter.listen;
    while (!done.load()) {
      PokeListener(listen.ipv6, listen.host, bound_port_);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  exposer_.reset();
  done = true;
  waker.join();
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
