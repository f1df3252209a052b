// The daemon as a systemd service: the sd_notify protocol over a real unix
// datagram socket (NOTIFY_SOCKET), and live reload on SIGHUP.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "test_support.h"

namespace pmu::testing {
namespace {

using namespace std::chrono_literals;

// A bound AF_UNIX datagram socket standing in for systemd's notify socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::runtime_error("cannot bind " + path);
    }
  }
  ~NotifySocket() { close(fd_); }

  // The next datagram, or "" after `timeout`.
  std::string Receive(std::chrono::milliseconds timeout) {
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

  // Datagrams until one contains `needle` (returned), or "" after `timeout`.
  std::string WaitFor(const std::string& needle, std::chrono::milliseconds timeout,
                      std::vector<std::string>* seen = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::string msg = Receive(100ms);
      if (msg.empty()) continue;
      if (seen != nullptr) seen->push_back(msg);
      if (msg.find(needle) != std::string::npos) return msg;
    }
    return "";
  }

 private:
  std::string path_;
  int fd_ = -1;
};

std::string EventsToml(std::initializer_list<const char*> events) {
  std::string out;
  for (const char* e : events)
    out += "[[events]]\nname = \"" + std::string(e) + "\"\nevent = \"" + e + "\"\n";
  return out;
}

std::string ServiceConfig(const TempDir& dir, const std::string& listen,
                          std::initializer_list<const char*> events) {
  return "[exporter]\nlisten = \"" + listen + "\"\nport_file = \"" + dir.path() +
         "/port\"\n[sampling]\ninterval = \"100ms\"\n" + EventsToml(events);
}

double Value(const std::vector<Series>& s, const std::string& name,
             const std::map<std::string, std::string>& labels = {}) {
  auto found = Select(s, name, labels);
  return found.size() == 1 ? found[0].value : -1;
}

TEST(SystemdNotify, ReadyOnlyWhenServingWatchdogFromPipelineReloadingThenReady) {
  TempDir dir;
  NotifySocket notify(dir.path() + "/notify");
  std::string config = dir.Write("c.toml", ServiceConfig(dir, "127.0.0.1:0", {"context-switches"}));
  Child daemon({DaemonBinary(), "--config", config},
               {"NOTIFY_SOCKET=" + dir.path() + "/notify", "WATCHDOG_USEC=400000"});

  std::string ready = notify.WaitFor("READY=1", 10s);
  ASSERT_FALSE(ready.empty()) << daemon.Stderr();
  EXPECT_NE(ready.find("STATUS=serving http://127.0.0.1:"), std::string::npos) << ready;
  // READY=1 promises that a scrape succeeds now, with the first readings in.
  auto port = WaitForPortFile(dir.path() + "/port", 0ms);
  ASSERT_TRUE(port) << "READY=1 sent before the port file was written";
  HttpResponse scrape = HttpGet("127.0.0.1", *port, "/metrics");
  ASSERT_EQ(scrape.status, 200);
  EXPECT_FALSE(Select(ParseExposition(scrape.body), "pmu_events_total").empty());

  // WATCHDOG_USEC=400ms: pings every ~100 ms while the sampler runs.
  int pings = 0;
  auto until = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < until) {
    if (notify.Receive(200ms).find("WATCHDOG=1") != std::string::npos) ++pings;
  }
  EXPECT_GE(pings, 4) << "watchdog pings in 1 s";

  ASSERT_EQ(kill(daemon.pid(), SIGHUP), 0);
  std::vector<std::string> seen;
  ASSERT_FALSE(notify.WaitFor("RELOADING=1", 5s, &seen).empty()) << daemon.Stderr();
  EXPECT_NE(seen.back().find("MONOTONIC_USEC="), std::string::npos);
  ASSERT_FALSE(notify.WaitFor("READY=1", 5s).empty()) << daemon.Stderr();

  auto status = daemon.Signal(SIGTERM, 2s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0);
  EXPECT_FALSE(notify.WaitFor("STOPPING=1", 1s).empty());
}

TEST(SystemdNotify, SilentWithoutNotifySocket) {
  TempDir dir;
  std::string config = dir.Write("c.toml", ServiceConfig(dir, "127.0.0.1:0", {"cpu-clock"}));
  Child daemon({DaemonBinary(), "--config", config});
  ASSERT_TRUE(WaitForPortFile(dir.path() + "/port", 10s)) << daemon.Stderr();
  auto status = daemon.Signal(SIGTERM, 2s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0) << daemon.Stderr();
}

// [log] target = "journald": log lines reach the journal socket as native
// journal protocol datagrams with syslog priorities, not stderr. Where no
// journald runs (CI, this VM) the test binds the socket itself.
TEST(Journald, WarningsArriveWithPriorityFourAndNotOnStderr) {
  const std::string socket_path = "/run/systemd/journal/socket";
  if (access(socket_path.c_str(), F_OK) == 0) {
    GTEST_SKIP() << socket_path << " exists (a real journald owns it); not intercepting it";
  }
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create " << socket_path;
  const bool made_dir = access("/run/systemd/journal", F_OK) != 0;
  ASSERT_EQ(system("mkdir -p /run/systemd/journal"), 0);
  struct Cleanup {
    std::string path;
    bool dir;
    ~Cleanup() {
      unlink(path.c_str());
      if (dir) rmdir("/run/systemd/journal");
    }
  } cleanup{socket_path, made_dir};
  NotifySocket journal(socket_path);

  TempDir dir;
  std::string config =
      dir.Write("c.toml", "[log]\ntarget = \"journald\"\n" +
                              ServiceConfig(dir, "127.0.0.1:0", {"context-switches", "cycles"}));
  Child daemon({DaemonBinary(), "--config", config});
  ASSERT_TRUE(WaitForPortFile(dir.path() + "/port", 10s)) << daemon.Stderr();
  std::vector<std::string> seen;
  const std::string info = journal.WaitFor("MESSAGE=serving http://", 5s, &seen);
  EXPECT_NE(info.find("PRIORITY=6"), std::string::npos) << info;
  EXPECT_NE(info.find("SYSLOG_IDENTIFIER=pmu-exporter"), std::string::npos) << info;
  bool warned = false;
  for (const auto& m : seen) {
    if (m.find("MESSAGE=event cycles: unsupported") == std::string::npos) continue;
    warned = true;
    EXPECT_NE(m.find("PRIORITY=4"), std::string::npos) << m;
  }
  // Only where cycles cannot be counted (no hardware PMU) is there a warning.
  if (!warned) std::printf("note: no 'cycles unsupported' warning (hardware PMU present?)\n");
  auto status = daemon.Signal(SIGTERM, 2s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0);
  EXPECT_EQ(daemon.Stderr().find("serving http://"), std::string::npos)
      << "journald target still logged to stderr:\n"
      << daemon.Stderr();
}

class ReloadTest : public ::testing::Test {
 protected:
  void Start(const std::string& text) {
    config_ = dir_.Write("c.toml", text);
    daemon_ =
        std::make_unique<Child>(std::vector<std::string>{DaemonBinary(), "--config", config_});
    auto port = WaitForPortFile(dir_.path() + "/port", 10s);
    ASSERT_TRUE(port) << daemon_->Stderr();
    port_ = *port;
  }
  std::vector<Series> Scrape(int port = 0) {
    HttpResponse r = HttpGet("127.0.0.1", port != 0 ? port : port_, "/metrics");
    EXPECT_EQ(r.status, 200);
    return ParseExposition(r.body);
  }
  // Sends SIGHUP and waits until the daemon logs `marker` once more than before.
  void ReloadAndWait(const std::string& marker) {
    auto count = [&] {
      const std::string err = daemon_->Stderr();
      size_t n = 0;
      for (size_t p = 0; (p = err.find(marker, p)) != std::string::npos; ++p) ++n;
      return n;
    };
    const size_t before = count();
    ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (count() == before && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_GT(count(), before) << "no '" << marker << "' after SIGHUP:\n" << daemon_->Stderr();
  }

  TempDir dir_;
  std::string config_;
  std::unique_ptr<Child> daemon_;
  int port_ = 0;
};

TEST_F(ReloadTest, ValidReloadKeepsTotalsAddsAndRemovesEvents) {
  Start(ServiceConfig(dir_, "127.0.0.1:0", {"context-switches", "cpu-clock"}));
  std::this_thread::sleep_for(400ms);
  auto before = Scrape();
  const double ts_before =
      Value(before, "pmu_exporter_config_last_reload_success_timestamp_seconds");
  EXPECT_EQ(Value(before, "pmu_exporter_config_last_reload_successful"), 1);

  dir_.Write("c.toml", ServiceConfig(dir_, "127.0.0.1:0", {"context-switches", "page-faults"}));
  ReloadAndWait("configuration reloaded");
  std::this_thread::sleep_for(300ms);
  auto after = Scrape();
  EXPECT_EQ(Value(after, "pmu_exporter_config_last_reload_successful"), 1);
  EXPECT_GT(Value(after, "pmu_exporter_config_last_reload_success_timestamp_seconds"), ts_before);
  for (int cpu : OnlineCpus()) {
    const std::map<std::string, std::string> cs{{"cpu", std::to_string(cpu)},
                                                {"event", "context-switches"}};
    EXPECT_GE(Value(after, "pmu_events_total", cs), Value(before, "pmu_events_total", cs))
        << "a kept event's total went down across reload, cpu " << cpu;
    EXPECT_GE(Value(after, "pmu_event_enabled_seconds_total", cs),
              Value(before, "pmu_event_enabled_seconds_total", cs) + 0.2);
    EXPECT_EQ(
        Select(after, "pmu_events_total", {{"cpu", std::to_string(cpu)}, {"event", "page-faults"}})
            .size(),
        1u)
        << "the added event is not exported on cpu " << cpu;
  }
  EXPECT_TRUE(Select(after, "pmu_events_total", {{"event", "cpu-clock"}}).empty());
  EXPECT_TRUE(Select(after, "pmu_event_supported", {{"event", "cpu-clock"}}).empty());
}

TEST_F(ReloadTest, InvalidReloadKeepsServingTheOldConfigWithoutAGap) {
  Start(ServiceConfig(dir_, "127.0.0.1:0", {"context-switches"}));
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, scrapes{0};
  std::thread scraper([&] {
    while (!stop) {
      if (HttpGet("127.0.0.1", port_, "/metrics", 2s).status != 200) ++failures;
      ++scrapes;
      std::this_thread::sleep_for(10ms);
    }
  });
  auto before = Scrape();
  dir_.Write("c.toml", "[sampling]\ninterval = \"fast\"\n");
  ReloadAndWait("reload rejected");
  std::this_thread::sleep_for(300ms);
  stop = true;
  scraper.join();
  EXPECT_EQ(failures.load(), 0) << "of " << scrapes.load() << " scrapes during the reload";
  EXPECT_NE(daemon_->Stderr().find(config_ + ":2:12: sampling.interval"), std::string::npos)
      << daemon_->Stderr();
  auto after = Scrape();
  EXPECT_EQ(Value(after, "pmu_exporter_config_last_reload_successful"), 0);
  const std::map<std::string, std::string> cs{{"cpu", "0"}, {"event", "context-switches"}};
  EXPECT_GE(Value(after, "pmu_events_total", cs), Value(before, "pmu_events_total", cs));
  EXPECT_GT(Value(after, "pmu_event_enabled_seconds_total", cs),
            Value(before, "pmu_event_enabled_seconds_total", cs))
      << "the old configuration stopped sampling";
  EXPECT_TRUE(daemon_->Running());
}

TEST_F(ReloadTest, NewListenAddressIsRebound) {
  const int first = FreeLoopbackPort();
  Start(ServiceConfig(dir_, "127.0.0.1:" + std::to_string(first), {"context-switches"}));
  int second = FreeLoopbackPort();
  while (second == first) second = FreeLoopbackPort();
  dir_.Write("c.toml",
             ServiceConfig(dir_, "127.0.0.1:" + std::to_string(second), {"context-switches"}));
  ReloadAndWait("configuration reloaded");
  EXPECT_EQ(HttpGet("127.0.0.1", second, "/metrics").status, 200) << daemon_->Stderr();
  EXPECT_EQ(HttpGet("127.0.0.1", first, "/metrics", 500ms).status, 0)
      << "the old address still answers";
}

TEST_F(ReloadTest, UnbindableAddressFailsTheReloadAndKeepsTheOldEndpoint) {
  Start(ServiceConfig(dir_, "127.0.0.1:0", {"context-switches"}));
  // 192.0.2.1 (TEST-NET-1) is not an address of this host: bind() fails.
  dir_.Write("c.toml", ServiceConfig(dir_, "192.0.2.1:9", {"context-switches"}));
  ReloadAndWait("reload failed");
  auto after = Scrape();
  EXPECT_EQ(Value(after, "pmu_exporter_config_last_reload_successful"), 0);
}

}  // namespace
}  // namespace pmu::testing
