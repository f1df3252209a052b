// The Service against the real kernel: perf fds are opened per online CPU
// and every one of them is closed by Stop().
#include "pmu/daemon/service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "fake_perf.h"
#include "test_support.h"

namespace pmu::daemon {
namespace {

size_t CountPerfFds() {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(entry.path(), ec);
    if (!ec && target.string().find("perf_event") != std::string::npos) ++n;
  }
  return n;
}

TEST(Service, OpensPerCpuCountersAndStopClosesEveryPerfFd) {
  const size_t before = CountPerfFds();
  config::Config cfg = config::DefaultConfig();
  cfg.exporter.listen.port = 0;
  Service service(cfg);
  service.Start();
  const auto snap = service.Latest();
  ASSERT_NE(snap, nullptr);
  size_t supported = service.pipeline().plan().SupportedCount();
  if (supported == 0) GTEST_SKIP() << "no event of the default set can be counted here";
  EXPECT_GT(CountPerfFds(), before);
  EXPECT_EQ(snap->sampling->counters.size(), static_cast<size_t>(sysconf(_SC_NPROCESSORS_ONLN)));
  service.Serve();
  EXPECT_GT(service.bound_port(), 0);
  service.Stop();
  EXPECT_EQ(CountPerfFds(), before);
}

TEST(Service, StuckSamplerStopsTheHeartbeatThatFeedsTheWatchdog) {
  // Real threads and a real clock: the watchdog watches exactly that.
  pmu::testing::FakePerf perf;
  config::Config cfg = config::DefaultConfig();
  cfg.exporter.listen.port = 0;
  cfg.sampling.interval = std::chrono::milliseconds(20);
  cfg.events = {{"cs", "context-switches", "", 0, 0}};
  Service service(cfg, perf);
  service.set_heartbeat_period(std::chrono::milliseconds(10));
  service.Start();
  service.Serve();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_LT(service.PipelineHeartbeatAge(), std::chrono::milliseconds(100));
  perf.BlockReads(true);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_GT(service.PipelineHeartbeatAge(), std::chrono::milliseconds(200))
      << "a sampler wedged in read() still looks alive";
  perf.BlockReads(false);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_LT(service.PipelineHeartbeatAge(), std::chrono::milliseconds(100));
  service.Stop();
  EXPECT_EQ(perf.open_count(), 0u);
}

TEST(Service, PortFileIsReplacedAtomically) {
  // A reader polling the file while it is rewritten sees either no file or
  // a whole port number, never an empty or partial one.
  pmu::testing::TempDir dir;
  const std::string path = dir.path() + "/port";
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::atomic<int> whole{0};
  std::thread reader([&] {
    while (!done.load()) {
      std::ifstream in(path);
      if (!in) continue;
      std::ostringstream content;
      content << in.rdbuf();
      const std::string text = content.str();
      if (text == "10000\n" || text == "65535\n") {
        ++whole;
      } else {
        ++torn;
      }
    }
  });
  for (int i = 0; i < 2000; ++i) WritePortFile(path, i % 2 == 0 ? 10000 : 65535);
  done = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(whole.load(), 0) << "the reader never saw the file: the test proved nothing";
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(Service, LandingPageEscapesTheMetricsPath) {
  // Issue 11: a metrics_path such as `"><script>` was written into the `/`
  // page as markup.
  pmu::testing::FakePerf perf;
  config::Config cfg = config::DefaultConfig();
  cfg.exporter.listen.port = 0;
  cfg.exporter.metrics_path = "/m\"><script>alert(1)</script>";
  cfg.events = {{"cs", "context-switches", "", 0, 0}};
  Service service(cfg, perf);
  service.Start();
  service.Serve();
  auto page = pmu::testing::HttpGet("127.0.0.1", service.bound_port(), "/");
  service.Stop();
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.body.find("<script"), std::string::npos) << page.body;
  EXPECT_NE(page.body.find("href=\"/m&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""),
            std::string::npos)
      << page.body;
}

}  // namespace
}  // namespace pmu::daemon
