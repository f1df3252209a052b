// The real daemon process against issue 11: counters monotonic across
// reloads while a scraper runs (item 8), --once stopped by signals (item 6),
// --config files that hung or exploded (item 5), unrunnable values (item 4).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
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

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Sends SIGHUP and waits until the daemon logged reload number `n` (signals
// sent while a reload runs would coalesce).
void ReloadAndWait(Child& daemon, size_t n) {
  ASSERT_EQ(kill(daemon.pid(), SIGHUP), 0);
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (Count(daemon.Stderr(), "configuration reloaded") < n) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << daemon.Stderr();
    std::this_thread::sleep_for(10ms);
  }
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

struct ReloadRun {
  int scrapes = 0;
  int failures = 0;
  std::vector<std::string> decreases;  // the first 20
};

// Starts the daemon on `configs(0)`, then ten times writes `configs(i)` and
// reloads, while a scraper that follows the port file scrapes every 5 ms and
// notes every counter-like series that decreased. `port_of(i)` is the port
// the file must name after reload i.
ReloadRun RunTenReloads(const std::function<std::string(const TempDir&, int)>& configs,
                        const std::function<int(int)>& port_of) {
  TempDir dir;
  ReloadRun run;
  const std::string path = dir.Write("c.toml", configs(dir, 0));
  Child daemon({DaemonBinary(), "--config", path});
  if (!WaitForPortFile(dir.path() + "/port", 10s)) {
    ADD_FAILURE() << daemon.Stderr();
    return run;
  }
  std::atomic<bool> done{false};
  std::mutex mutex;
  std::thread scraper([&] {
    std::map<std::string, double> last;
    while (!done) {
      const std::optional<int> port = WaitForPortFile(dir.path() + "/port", 0ms);
      if (!port) continue;  // never: the file is replaced atomically
      const HttpResponse r = HttpGet("127.0.0.1", *port, "/metrics", 2s);
      std::lock_guard lock(mutex);
      ++run.scrapes;
      if (r.status != 200) {
        ++run.failures;
        continue;
      }
      for (const Series& s : ParseExposition(r.body)) {
        if (!IsMonotonic(s.name)) continue;
        const std::string key = Key(s);
        const auto it = last.find(key);
        if (it != last.end() && s.value < it->second && run.decreases.size() < 20) {
          run.decreases.push_back(key + ": " + std::to_string(it->second) + " -> " +
                                  std::to_string(s.value));
        }
        last[key] = s.value;
      }
      std::this_thread::sleep_for(5ms);
    }
  });
  for (int i = 1; i <= 10; ++i) {
    dir.Write("c.toml", configs(dir, i));
    ReloadAndWait(daemon, static_cast<size_t>(i));
    if (::testing::Test::HasFatalFailure()) break;
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(WaitForPortFile(dir.path() + "/port", 0ms), port_of(i)) << daemon.Stderr();
  }
  done = true;
  scraper.join();
  const auto status = daemon.Signal(SIGTERM, 5s);
  EXPECT_EQ(status, 0) << daemon.Stderr();
  EXPECT_GT(run.scrapes, 100);
  EXPECT_TRUE(run.decreases.empty()) << ::testing::PrintToString(run.decreases);
  return run;
}

const std::string kInterval = "[sampling]\ninterval = \"20ms\"\n";

// The identical file, another interval (a new pipeline), a [stats] change...
// and back: no series decreases, no scrape fails.
TEST(ReloadMonotonic, NoSeriesDecreasesAndNoScrapeFailsDuringTenReloads) {
  const int port = FreeLoopbackPort();
  const std::vector<std::string> variants = {
      kInterval,
      kInterval,
      "[sampling]\ninterval = \"30ms\"\n",
      kInterval,
      "[stats]\ncpufreq = false\n" + kInterval,
  };
  const ReloadRun run = RunTenReloads(
      [&](const TempDir& dir, int i) {
        return Config(dir, port, variants[static_cast<size_t>(i) % variants.size()]);
      },
      [&](int) { return port; });
  EXPECT_EQ(run.failures, 0) << "of " << run.scrapes << " scrapes";
}

std::string WebChange(int i) {
  return kInterval + "[web]\nmax_connections = " + std::to_string(100 + i) + "\n";
}

// A [web] change rebinds the endpoint. On another address the new server
// listens (and the port file names it) before the old one closes: a scraper
// that follows the port file never fails; the http_* counters continue.
TEST(ReloadMonotonic, WebChangeOnAnotherAddressFailsNoScrapeAndCountersContinue) {
  const int port_a = FreeLoopbackPort();
  int port_b = FreeLoopbackPort();
  while (port_b == port_a) port_b = FreeLoopbackPort();
  const auto port_of = [&](int i) { return i % 2 == 1 ? port_b : port_a; };
  const ReloadRun run = RunTenReloads(
      [&](const TempDir& dir, int i) { return Config(dir, port_of(i), WebChange(i)); }, port_of);
  EXPECT_EQ(run.failures, 0) << "of " << run.scrapes << " scrapes";
}

// A [web] change on the same address: the old socket must close before the
// new one can bind it (web::HttpServer has no SO_REUSEPORT option), so a
// scrape arriving in that gap of about a millisecond is refused; the count is
// recorded, not asserted. The counters continue.
TEST(ReloadMonotonic, WebChangeOnTheSameAddressKeepsCountersMonotonic) {
  const int port = FreeLoopbackPort();
  const ReloadRun run =
      RunTenReloads([&](const TempDir& dir, int i) { return Config(dir, port, WebChange(i)); },
                    [&](int) { return port; });
  RecordProperty("failed_scrapes", run.failures);
  RecordProperty("scrapes", run.scrapes);
  std::printf("same-address [web] rebinds: %d of %d scrapes failed\n", run.failures, run.scrapes);
}

// Item 6: SIGINT and SIGTERM were blocked and only collected by the main
// loop, which --once never reaches.
TEST(DaemonOnce, StopsOnSigtermAndSigintEvenWithAnHourLongInterval) {
  TempDir dir;
  const std::string config =
      dir.Write("c.toml",
                "[sampling]\ninterval = \"1h\"\n[[events]]\nname = \"cs\"\nevent = "
                "\"context-switches\"\n");
  for (int sig : {SIGTERM, SIGINT}) {
    Child daemon({DaemonBinary(), "--once", "--config", config});
    std::this_thread::sleep_for(1s);  // past start-up, into the interval
    const auto start = std::chrono::steady_clock::now();
    const auto status = daemon.Signal(sig, 5s);
    ASSERT_TRUE(status) << "--once ignored signal " << sig;
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
    EXPECT_EQ(*status, 128 + sig) << daemon.Stderr();
    EXPECT_EQ(daemon.Stdout(), "") << "a half-measured exposition was printed";
  }
}

// CPU time (user + system) of a process, in clock ticks.
long CpuTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  long ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stol(field);
  }
  return ticks;
}

// Item 4, the environment's duration: a huge WATCHDOG_USEC overflowed the
// heartbeat and main-loop timeouts (the daemon spun at 125% CPU and ignored
// SIGTERM).
TEST(DaemonOnce, HugeWatchdogIntervalStillServesAndStops) {
  TempDir dir;
  const std::string config = dir.Write("c.toml", Config(dir, 0, kInterval));
  Child daemon({DaemonBinary(), "--config", config}, {"WATCHDOG_USEC=9223372036854775807"});
  const auto port = WaitForPortFile(dir.path() + "/port", 10s);
  ASSERT_TRUE(port) << daemon.Stderr();
  const long before = CpuTicks(daemon.pid());
  std::this_thread::sleep_for(1s);
  EXPECT_LT(CpuTicks(daemon.pid()) - before, sysconf(_SC_CLK_TCK) / 2) << "spinning";
  EXPECT_EQ(HttpGet("127.0.0.1", *port, "/metrics").status, 200) << daemon.Stderr();
  const auto status = daemon.Signal(SIGTERM, 3s);
  ASSERT_TRUE(status) << "did not stop";
  EXPECT_EQ(*status, 0) << daemon.Stderr();
}

// Item 5: a FIFO as --config blocked forever; /dev/zero read until memory
// ran out. Both are refused at once with exit status 2.
TEST(DaemonConfigFile, FifoAndDeviceAreRefusedAtOnce) {
  TempDir dir;
  const std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& path : {fifo, std::string("/dev/zero")}) {
    Child daemon({DaemonBinary(), "--config", path});
    const auto status = daemon.Wait(5s);
    ASSERT_TRUE(status) << path << " made the daemon hang";
    EXPECT_EQ(*status, 2) << daemon.Stderr();
    EXPECT_NE(daemon.Stderr().find("not a regular file"), std::string::npos) << daemon.Stderr();
  }
}

// Item 4: values that were accepted but could not run are config errors.
TEST(DaemonConfigFile, UnrunnableDurationsExitTwoWithTheBounds) {
  TempDir dir;
  const std::string config = dir.Write("c.toml", "[web]\nrequest_timeout = \"2562047h\"\n");
  const RunResult r = RunCommand({DaemonBinary(), "--check-config", "--config", config});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(config + ":2:19: web.request_timeout: request_timeout '2562047h' is out "
                                "of range [1ms, 24h]"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace pmu::testing
