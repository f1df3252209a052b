// The Service against the real kernel: perf fds are opened per online CPU
// and every one of them is closed by Stop().
#include "pmu/daemon/service.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "../collectors/fake_perf.h"

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
  const auto snap = service.Snapshot();
  size_t supported = service.pipeline().plan().SupportedCount();
  if (supported == 0) GTEST_SKIP() << "no event of the default set can be counted here";
  EXPECT_GT(CountPerfFds(), before);
  EXPECT_EQ(snap.cpus.size(), static_cast<size_t>(sysconf(_SC_NPROCESSORS_ONLN)));
  service.Serve();
  EXPECT_GT(service.bound_port(), 0);
  service.Stop();
  EXPECT_EQ(CountPerfFds(), before);
}

TEST(Service, StuckSamplerStopsTheHeartbeatThatFeedsTheWatchdog) {
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
  EXPECT_LT(service.SamplerHeartbeatAge(), std::chrono::milliseconds(100));
  perf.BlockReads(true);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_GT(service.SamplerHeartbeatAge(), std::chrono::milliseconds(200))
      << "a sampler wedged in read() still looks alive";
  perf.BlockReads(false);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_LT(service.SamplerHeartbeatAge(), std::chrono::milliseconds(100));
  service.Stop();
  EXPECT_EQ(perf.open_count(), 0u);
}

TEST(Service, PortFileIsWrittenAtomically) {
  char tmpl[] = "/tmp/pmu-port-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string path = std::string(tmpl) + "/port";
  WritePortFile(path, 12345);
  std::FILE* f = std::fopen(path.c_str(), "r");
  ASSERT_NE(f, nullptr);
  int port = 0;
  EXPECT_EQ(std::fscanf(f, "%d", &port), 1);
  std::fclose(f);
  EXPECT_EQ(port, 12345);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace pmu::daemon
