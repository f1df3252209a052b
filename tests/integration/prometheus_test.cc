// A real Prometheus server (Debian's `prometheus`) scrapes a real daemon on
// loopback; the test then asks Prometheus' HTTP API what it stored.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <thread>

#include "test_support.h"

namespace pmu::testing {
namespace {

using namespace std::chrono_literals;

std::string UrlEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

TEST(RealPrometheus, ScrapesPerCpuSeries) {
  if (access("/usr/bin/prometheus", X_OK) != 0) {
    GTEST_SKIP() << "Debian's prometheus is not installed (scripts/install-deps.sh installs it)";
  }
  const auto started = std::chrono::steady_clock::now();
  TempDir dir;
  std::string config =
      dir.Write("pmu.toml", "[exporter]\nlisten = \"127.0.0.1:0\"\nport_file = \"" + dir.path() +
                                "/port\"\n[sampling]\ninterval = \"250ms\"\n");
  Child daemon({DaemonBinary(), "--config", config});
  auto port = WaitForPortFile(dir.path() + "/port", 10s);
  ASSERT_TRUE(port) << daemon.Stderr();

  const int prom_port = FreeLoopbackPort();
  std::string prom_config = dir.Write(
      "prometheus.yml",
      "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      "scrape_configs:\n  - job_name: pmu\n    static_configs:\n      - targets: ['127.0.0.1:" +
          std::to_string(*port) + "']\n");
  Child prom({"/usr/bin/prometheus", "--config.file=" + prom_config,
              "--storage.tsdb.path=" + dir.path() + "/tsdb",
              "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)});

  auto query = [&](const std::string& q) {
    return HttpGet("127.0.0.1", prom_port, "/api/v1/query?query=" + UrlEncode(q), 2s);
  };
  const auto cpus = OnlineCpus();
  bool up = false;
  bool all_cpus = false;
  std::string last;
  while (std::chrono::steady_clock::now() - started < 25s && !(up && all_cpus)) {
    std::this_thread::sleep_for(500ms);
    ASSERT_TRUE(prom.Running()) << "prometheus exited:\n" << prom.Stderr();
    HttpResponse r = query("up{job=\"pmu\"}");
    up = r.status == 200 && r.body.find("\"value\":[") != std::string::npos &&
         r.body.find(",\"1\"]") != std::string::npos;
    HttpResponse series = query("pmu_events_total{event=\"context-switches\"}");
    last = series.body;
    all_cpus = series.status == 200;
    for (int cpu : cpus) {
      all_cpus = all_cpus &&
                 series.body.find("\"cpu\":\"" + std::to_string(cpu) + "\"") != std::string::npos;
    }
  }
  EXPECT_TRUE(up) << "up{job=\"pmu\"} never became 1\nprometheus stderr:\n" << prom.Stderr();
  EXPECT_TRUE(all_cpus) << "pmu_events_total lacks a per-CPU series; last answer: " << last;
  // Unsupported hardware events are not stored as counts.
  HttpResponse cycles = query("pmu_event_supported{event=\"cycles\"}");
  EXPECT_EQ(cycles.status, 200);
  auto elapsed = std::chrono::steady_clock::now() - started;
  std::printf("real Prometheus saw the per-CPU series after %lld ms\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()));
  EXPECT_LT(elapsed, 30s);
}

}  // namespace
}  // namespace pmu::testing
