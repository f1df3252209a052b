// End-to-end tests of the pmu-exporter binary: real process, real HTTP,
// real promtool.
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "test_support.h"

namespace pmu::testing {
namespace {

using namespace std::chrono_literals;

const std::vector<std::string> kSoftwareEvents = {"cpu-clock", "context-switches", "cpu-migrations",
                                                  "page-faults"};
const std::vector<std::string> kHardwareEvents = {"cycles", "instructions", "cache-misses",
                                                  "branch-misses"};

// The built-in default event set, on an ephemeral port, sampled every 200 ms.
std::string TestConfig(const TempDir& dir, const std::string& interval = "200ms") {
  std::string events;
  for (const auto* list : {&kHardwareEvents, &kSoftwareEvents}) {
    for (const auto& e : *list)
      events += "[[events]]\nname = \"" + e + "\"\nevent = \"" + e + "\"\n";
  }
  return "[exporter]\nlisten = \"127.0.0.1:0\"\nport_file = \"" + dir.path() +
         "/port\"\n[sampling]\ninterval = \"" + interval + "\"\n" + events;
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_.Write("config.toml", TestConfig(dir_));
    daemon_ =
        std::make_unique<Child>(std::vector<std::string>{DaemonBinary(), "--config", config_});
    auto port = WaitForPortFile(dir_.path() + "/port", 10s);
    ASSERT_TRUE(port.has_value()) << "daemon did not write its port file; stderr:\n"
                                  << daemon_->Stderr();
    port_ = *port;
  }

  std::string Scrape() {
    HttpResponse r = HttpGet("127.0.0.1", port_, "/metrics");
    EXPECT_EQ(r.status, 200) << daemon_->Stderr();
    return r.body;
  }

  TempDir dir_;
  std::string config_;
  std::unique_ptr<Child> daemon_;
  int port_ = 0;
};

TEST_F(DaemonTest, ServesIncreasingPerCpuSoftwareCountsAndHonestHardwareSupport) {
  auto first = ParseExposition(Scrape());
  std::this_thread::sleep_for(1s);
  auto second = ParseExposition(Scrape());
  const auto cpus = OnlineCpus();
  ASSERT_FALSE(cpus.empty());

  for (const auto& ev : kSoftwareEvents) {
    auto sup = Select(second, "pmu_event_supported", {{"event", ev}});
    ASSERT_EQ(sup.size(), 1u) << ev;
    EXPECT_EQ(sup[0].value, 1) << ev;
    for (int cpu : cpus) {
      const std::map<std::string, std::string> labels{{"cpu", std::to_string(cpu)}, {"event", ev}};
      auto a = Select(first, "pmu_events_total", labels);
      auto b = Select(second, "pmu_events_total", labels);
      ASSERT_EQ(a.size(), 1u) << ev << " cpu " << cpu;
      ASSERT_EQ(b.size(), 1u) << ev << " cpu " << cpu;
      EXPECT_GE(b[0].value, a[0].value) << ev << " cpu " << cpu;
      auto ea = Select(first, "pmu_event_enabled_seconds_total", labels);
      auto eb = Select(second, "pmu_event_enabled_seconds_total", labels);
      ASSERT_EQ(eb.size(), 1u);
      // Enabled time advanced by about the second we slept.
      EXPECT_NEAR(eb[0].value - ea[0].value, 1.0, 0.5) << ev << " cpu " << cpu;
      EXPECT_EQ(Select(second, "pmu_event_running_seconds_total", labels).size(), 1u);
    }
  }
  // A CPU-wide cpu-clock counts wall time on every CPU, busy or idle.
  for (int cpu : cpus) {
    const std::map<std::string, std::string> labels{{"cpu", std::to_string(cpu)},
                                                    {"event", "cpu-clock"}};
    double delta = Select(second, "pmu_events_total", labels)[0].value -
                   Select(first, "pmu_events_total", labels)[0].value;
    EXPECT_GT(delta, 0.5e9) << "cpu " << cpu;
  }
  for (const auto& ev : kHardwareEvents) {
    auto sup = Select(second, "pmu_event_supported", {{"event", ev}});
    ASSERT_EQ(sup.size(), 1u) << ev;
    if (sup[0].value == 1) {
      std::printf("note: %s is supported here (hardware PMU present)\n", ev.c_str());
      EXPECT_EQ(Select(second, "pmu_events_total", {{"event", ev}}).size(), cpus.size());
    } else {
      EXPECT_TRUE(Select(second, "pmu_events_total", {{"event", ev}}).empty())
          << ev << " is unsupported but exported as a count";
      EXPECT_NE(daemon_->Stderr().find("event " + ev + ": unsupported"), std::string::npos)
          << daemon_->Stderr();
    }
  }
  auto build = Select(second, "pmu_exporter_build_info");
  ASSERT_EQ(build.size(), 1u);
  EXPECT_FALSE(build[0].labels["version"].empty());
}

TEST_F(DaemonTest, PromtoolFindsNoProblem) {
  RunResult r = RunCommand({"promtool", "check", "metrics"}, Scrape());
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(r.out + r.err, "");
}

TEST_F(DaemonTest, UnsupportedEventWarnedExactlyOnce) {
  std::this_thread::sleep_for(600ms);  // a few sampling intervals
  Scrape();
  const std::string err = daemon_->Stderr();
  size_t count = 0;
  for (size_t pos = 0; (pos = err.find("event cycles: unsupported", pos)) != std::string::npos;
       ++pos) {
    ++count;
  }
  if (count == 0) GTEST_SKIP() << "cycles is supported on this host (hardware PMU present)";
  EXPECT_EQ(count, 1u) << err;
}

TEST_F(DaemonTest, SigtermStopsWithinOneSecondWithStatusZero) {
  auto start = std::chrono::steady_clock::now();
  auto status = daemon_->Signal(SIGTERM, 1s);
  ASSERT_TRUE(status.has_value()) << "still running 1 s after SIGTERM";
  EXPECT_EQ(*status, 0) << daemon_->Stderr();
  std::printf("stopped %lld ms after SIGTERM\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - start)
                                         .count()));
}

TEST_F(DaemonTest, SigintStopsWithinOneSecondWithStatusZero) {
  auto status = daemon_->Signal(SIGINT, 1s);
  ASSERT_TRUE(status.has_value()) << "still running 1 s after SIGINT";
  EXPECT_EQ(*status, 0) << daemon_->Stderr();
}

TEST(DaemonCli, OncePrintsAValidExpositionWithTwoSamples) {
  TempDir dir;
  std::string config = dir.Write("c.toml", TestConfig(dir, "100ms"));
  RunResult r = RunCommand({DaemonBinary(), "--config", config, "--once"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto series = ParseExposition(r.out);
  for (int cpu : OnlineCpus()) {
    auto clock =
        Select(series, "pmu_events_total", {{"cpu", std::to_string(cpu)}, {"event", "cpu-clock"}});
    ASSERT_EQ(clock.size(), 1u) << r.out;
    EXPECT_GT(clock[0].value, 0.05e9);  // at least half of one 100 ms interval
  }
  RunResult check = RunCommand({"promtool", "check", "metrics"}, r.out);
  EXPECT_EQ(check.status, 0) << check.out << check.err;
}

TEST(DaemonCli, CheckConfigAcceptsTheShippedConfig) {
  RunResult r = RunCommand(
      {DaemonBinary(), "--config", SourcePath("packaging/config.toml"), "--check-config"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("config OK", 0), 0u) << r.out;
  // The second line: the series the configuration exports on this host.
  EXPECT_NE(r.out.find("\nseries: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" of at most 50000 ([exporter] max_series) on "), std::string::npos)
      << r.out;
  // The summary, one line per event (8 in the shipped config), the series.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2 + 8) << r.out;
  EXPECT_NE(r.out.find("\nevent context-switches (context-switches): countable here"),
            std::string::npos)
      << r.out;
}

TEST(DaemonCli, CheckConfigResolvesEveryEventAsStartUpDoes) {
  TempDir dir;
  // Valid everywhere: a PMU this host lacks and a libpfm4 event of another
  // CPU model are "not countable here", not errors (mixed fleets).
  const std::string fleet =
      dir.Write("fleet.toml",
                "[[events]]\nname = \"l3\"\nevent = \"amd_l3/event=0x4,umask=0xff/\"\n"
                "[[events]]\nname = \"cas\"\nevent = \"skx::INST_RETIRED:ANY_P\"\n"
                "[[events]]\nname = \"al\"\nevent = \"alignment-faults\"\n");
  RunResult r = RunCommand({DaemonBinary(), "--config", fleet, "--check-config"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("event l3 (amd_l3/event=0x4,umask=0xff/): not countable on this host"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("event cas (skx::INST_RETIRED:ANY_P): not countable on this host"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("event al (alignment-faults): countable here"), std::string::npos) << r.out;
  // Unknown to every encoder: a configuration error at check, start-up alike.
  for (const auto& [event, nearest] : std::vector<std::pair<std::string, std::string>>{
           {"instrucions", "instructions"}, {"msr/tcs/", "tsc"}}) {
    const std::string bad =
        dir.Write("bad.toml", "[[events]]\nname = \"x\"\nevent = \"" + event + "\"\n");
    RunResult check = RunCommand({DaemonBinary(), "--config", bad, "--check-config"});
    EXPECT_EQ(check.status, 2) << event << check.out;
    EXPECT_NE(check.err.find(bad + ":3:9: events[1].event: "), std::string::npos) << check.err;
    EXPECT_NE(check.err.find(nearest), std::string::npos) << check.err;
    EXPECT_EQ(RunCommand({DaemonBinary(), "--config", bad, "--once"}).status, 2) << event;
  }
}

TEST(DaemonCli, CheckConfigRefusesTooManySeriesWithTheLargestFamilies) {
  TempDir dir;
  const std::string path = dir.Write("big.toml", "[exporter]\nmax_series = 10\n");
  RunResult r = RunCommand({DaemonBinary(), "--config", path, "--check-config"});
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("more than [exporter] max_series = 10. Largest families: "),
            std::string::npos)
      << r.err;
  RunResult once = RunCommand({DaemonBinary(), "--config", path, "--once"});
  EXPECT_EQ(once.status, 2) << once.err;
}

TEST(DaemonCli, BadConfigsExitTwoNamingFileLineColumnAndKey) {
  struct Case {
    std::string text, position, key;
  };
  const std::vector<Case> cases = {
      {"[sampling]\ninterval = \"-1s\"\n", ":2:12", "sampling.interval"},
      {"[sampling]\nintervall = \"1s\"\n", ":2:1", "sampling.intervall"},
      {"[exporter]\nlisten = \"localhost\"\n", ":2:10", "exporter.listen"},
      {"[log]\nlevel = [\n", ":2:", ""},
  };
  TempDir dir;
  for (const auto& c : cases) {
    std::string path = dir.Write("bad.toml", c.text);
    RunResult r = RunCommand({DaemonBinary(), "--config", path, "--check-config"});
    EXPECT_EQ(r.status, 2) << c.text;
    EXPECT_NE(r.err.find(path + c.position), std::string::npos) << c.text << "\n" << r.err;
    EXPECT_NE(r.err.find(c.key), std::string::npos) << c.text << "\n" << r.err;
    // The daemon must not have started serving with a bad config.
    RunResult serve = RunCommand({DaemonBinary(), "--config", path});
    EXPECT_EQ(serve.status, 2) << c.text;
  }
}

TEST(DaemonCli, HashPasswordPrintsAHashTheConfigAccepts) {
  RunResult r = RunCommand({DaemonBinary(), "--hash-password"}, "s3cret\n");
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(r.out.rfind("$y$", 0), 0u) << r.out;
  const std::string hash = r.out.substr(0, r.out.find('\n'));
  TempDir dir;
  std::string config = dir.Write(
      "c.toml", "[[web.users]]\nname = \"prometheus\"\npassword_hash = \"" + hash + "\"\n");
  RunResult check = RunCommand({DaemonBinary(), "--config", config, "--check-config"});
  EXPECT_EQ(check.status, 0) << check.err;
  EXPECT_EQ(RunCommand({DaemonBinary(), "--hash-password"}, "\n").status, 2) << "empty password";
}

TEST(DaemonCli, MissingConfigFileExitsTwo) {
  RunResult r = RunCommand({DaemonBinary(), "--config", "/nonexistent/pmu.toml", "--check-config"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("/nonexistent/pmu.toml"), std::string::npos) << r.err;
}

TEST(DaemonCli, UsageErrorsExitTwo) {
  RunResult r = RunCommand({DaemonBinary(), "--no-such-flag"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("unknown argument '--no-such-flag'"), std::string::npos) << r.err;
  EXPECT_EQ(RunCommand({DaemonBinary(), "--config"}).status, 2);
}

TEST(DaemonCli, HelpAndVersion) {
  RunResult help = RunCommand({DaemonBinary(), "--help"});
  EXPECT_EQ(help.status, 0);
  for (const char* opt : {"--config", "--check-config", "--once", "--list-events", "--version"}) {
    EXPECT_NE(help.out.find(opt), std::string::npos) << opt;
  }
  RunResult version = RunCommand({DaemonBinary(), "--version"});
  EXPECT_EQ(version.status, 0);
  EXPECT_EQ(version.out.rfind("pmu-exporter ", 0), 0u) << version.out;
}

TEST(DaemonCli, ListEventsMarksWhatThisHostCanOpen) {
  RunResult r = RunCommand({DaemonBinary(), "--list-events", "CONTEXT_SWITCHES"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("* perf::PERF_COUNT_SW_CONTEXT_SWITCHES"), std::string::npos) << r.out;
  RunResult hw = RunCommand({DaemonBinary(), "--list-events", "PERF_COUNT_HW_CPU_CYCLES"});
  ASSERT_EQ(hw.status, 0);
  EXPECT_NE(hw.out.find("perf::PERF_COUNT_HW_CPU_CYCLES"), std::string::npos) << hw.out;
}

}  // namespace
}  // namespace pmu::testing
