// Issue 11 item 8: every counter is monotonic across reloads (identical
// file or not), and reloads never fail a scrape. The real daemon, real
// SIGHUPs, a scraper on loopback every few milliseconds.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace pmu::testing {
namespace {

using namespace std::chrono_literals;

// Counter-like series: counters and the histograms' buckets, sums and counts
// (every observation a derived histogram takes is finite and >= 0).
bool IsMonotonic(const std::string& name) {
  for (const char* suffix : {"_total", "_bucket", "_count", "_sum"}) {
    const std::string s = suffix;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      return true;
    }
  }
  return false;
}

std::string Key(const Series& s) {
  std::string key = s.name + "{";
  for (const auto& [k, v] : s.labels) key += k + "=" + v + ",";
  return key + "}";
}

std::string Config(const TempDir& dir, int port, const std::string& extra) {
  return "[exporter]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\nport_file = \"" +
         dir.path() + "/port\"\n" + extra +
         "[[events]]\nname = \"cs\"\nevent = \"context-switches\"\n"
         "[[events]]\nname = \"clock\"\nevent = \"cpu-clock\"\n"
         "[[derived]]\nname = \"cs_rate\"\nnumerator = \"cs\"\nper_second = true\n"
         "[[derived]]\nname = \"busy\"\nnumerator = \"proc_stat/busy_seconds\"\n"
         "denominator = \"proc_stat/total_seconds\"\nscope = \"cpu\"\n";
}

TEST(ReloadMonotonic, NoSeriesDecreasesAndNoScrapeFailsDuringTenReloads) {
  TempDir dir;
  const int port = FreeLoopbackPort();
  const std::string base = "[sampling]\ninterval = \"20ms\"\n";
  // The reloads: the identical file, another interval (a new pipeline),
  // another metrics_path... and back. [web] changes on the same address are
  // in the next test.
  const std::vector<std::string> variants = {
      base,
      base,
      "[sampling]\ninterval = \"30ms\"\n",
      base,
      "[exporter]\nmax_series = 40000\n" + base,
  };
  const std::string path = dir.Write("c.toml", Config(dir, port, variants[0]));
  Child daemon({DaemonBinary(), "--config", path});
  ASSERT_TRUE(WaitForPortFile(dir.path() + "/port", 10s)) << daemon.Stderr();

  std::atomic<bool> done{false};
  std::mutex mutex;
  std::vector<std::string> decreases;
  int scrapes = 0;
  int failures = 0;
  std::thread scraper([&] {
    std::map<std::string, double> last;
    while (!done) {
      const HttpResponse r = HttpGet("127.0.0.1", port, "/metrics", 2s);
      std::lock_guard lock(mutex);
      ++scrapes;
      if (r.status != 200) {
        ++failures;
        continue;
      }
      for (const Series& s : ParseExposition(r.body)) {
        if (!IsMonotonic(s.name)) continue;
        const std::string key = Key(s);
        const auto it = last.find(key);
        if (it != last.end() && s.value < it->second && decreases.size() < 20) {
          decreases.push_back(key + ": " + std::to_string(it->second) + " -> " +
                              std::to_string(s.value));
        }
        last[key] = s.value;
      }
      std::this_thread::sleep_for(5ms);
    }
  });
  for (int i = 1; i <= 10; ++i) {
    dir.Write("c.toml", Config(dir, port, variants[static_cast<size_t>(i) % variants.size()]));
    ASSERT_EQ(kill(daemon.pid(), SIGHUP), 0);
    std::this_thread::sleep_for(300ms);
  }
  done = true;
  scraper.join();
  const std::string log = daemon.Stderr();
  size_t reloaded = 0;
  for (size_t at = log.find("configuration reloaded"); at != std::string::npos;
       at = log.find("configuration reloaded", at + 1)) {
    ++reloaded;
  }
  EXPECT_EQ(reloaded, 10u) << log;
  std::lock_guard lock(mutex);
  EXPECT_GT(scrapes, 100);
  EXPECT_EQ(failures, 0) << "of " << scrapes << " scrapes";
  EXPECT_TRUE(decreases.empty()) << ::testing::PrintToString(decreases);
  auto status = daemon.Signal(SIGTERM, 5s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0);
}

// A [web] change rebinds the endpoint. On another address the new server
// listens (and the port file names it) before the old one closes: a scraper
// that follows the port file never fails; the http_* counters continue.
TEST(ReloadMonotonic, WebChangeOnAnotherAddressFailsNoScrapeAndCountersContinue) {
  TempDir dir;
  const int port_a = FreeLoopbackPort();
  int port_b = FreeLoopbackPort();
  while (port_b == port_a) port_b = FreeLoopbackPort();
  const std::string base = "[sampling]\ninterval = \"20ms\"\n";
  const std::string path = dir.Write("c.toml", Config(dir, port_a, base));
  Child daemon({DaemonBinary(), "--config", path});
  ASSERT_TRUE(WaitForPortFile(dir.path() + "/port", 10s)) << daemon.Stderr();

  std::atomic<bool> done{false};
  std::mutex mutex;
  std::vector<std::string> decreases;
  int scrapes = 0;
  int failures = 0;
  std::thread scraper([&] {
    std::map<std::string, double> last;
    while (!done) {
      const std::optional<int> port = WaitForPortFile(dir.path() + "/port", 0ms);
      if (!port) continue;  // never: the file is replaced atomically
      const HttpResponse r = HttpGet("127.0.0.1", *port, "/metrics", 2s);
      std::lock_guard lock(mutex);
      ++scrapes;
      if (r.status != 200) {
        ++failures;
        continue;
      }
      for (const Series& s : ParseExposition(r.body)) {
        if (!IsMonotonic(s.name)) continue;
        const std::string key = Key(s);
        const auto it = last.find(key);
        if (it != last.end() && s.value < it->second && decreases.size() < 20) {
          decreases.push_back(key + ": " + std::to_string(it->second) + " -> " +
                              std::to_string(s.value));
        }
        last[key] = s.value;
      }
      std::this_thread::sleep_for(5ms);
    }
  });
  for (int i = 1; i <= 10; ++i) {
    const int next = i % 2 == 1 ? port_b : port_a;
    const std::string web = "[web]\nmax_connections = " + std::to_string(100 + i) + "\n";
    dir.Write("c.toml", Config(dir, next, base + web));
    ASSERT_EQ(kill(daemon.pid(), SIGHUP), 0);
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(WaitForPortFile(dir.path() + "/port", 0ms), next) << daemon.Stderr();
  }
  done = true;
  scraper.join();
  std::lock_guard lock(mutex);
  EXPECT_GT(scrapes, 100);
  EXPECT_EQ(failures, 0) << "of " << scrapes << " scrapes\n" << daemon.Stderr();
  EXPECT_TRUE(decreases.empty()) << ::testing::PrintToString(decreases);
  auto status = daemon.Signal(SIGTERM, 5s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0);
}

}  // namespace
}  // namespace pmu::testing
