// The Service against the real kernel: perf fds are opened per online CPU
// and every one of them is closed by Stop().
#include "pmu/daemon/service.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
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

// Issue 11 item 9: a port file that cannot be written (here: the file size
// limit, an injected write failure) names the reason and leaves no .tmp.
TEST(Service, PortFileWriteFailureNamesTheReasonAndLeavesNoTemporaryFile) {
  pmu::testing::TempDir dir;
  const std::string path = dir.path() + "/port";
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of a signal
  rlimit tiny = old;
  tiny.rlim_cur = 2;  // "12345\n" cannot be written whole
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &tiny), 0);
  std::string error;
  try {
    WritePortFile(path, 12345);
  } catch (const std::runtime_error& e) {
    error = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  EXPECT_NE(error.find(std::strerror(EFBIG)), std::string::npos) << "error: " << error;
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_FALSE(std::filesystem::exists(path));
}

// The same on a really full file system: a tiny tmpfs, filled up.
class FullTmpfs {
 public:
  FullTmpfs() {
    if (geteuid() != 0) {
      why_ = "needs root to mount a tmpfs";
      return;
    }
    path_ = dir_.path() + "/full";
    std::filesystem::create_directory(path_);
    if (mount("tmpfs", path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=16k") != 0) {
      why_ = std::string("cannot mount a tmpfs: ") + std::strerror(errno);
      return;
    }
    mounted_ = true;
    std::ofstream fill(path_ + "/fill");
    const std::string block(4096, 'x');
    while (fill.write(block.data(), static_cast<std::streamsize>(block.size()))) fill.flush();
  }
  ~FullTmpfs() {
    if (mounted_) umount2(path_.c_str(), MNT_DETACH);
  }
  bool ok() const { return mounted_; }
  const std::string& why() const { return why_; }
  const std::string& path() const { return path_; }

 private:
  pmu::testing::TempDir dir_;
  std::string path_;
  std::string why_;
  bool mounted_ = false;
};

TEST(Service, PortFileOnAFullDiskNamesTheReasonAndLeavesNoTemporaryFile) {
  FullTmpfs full;
  if (!full.ok()) GTEST_SKIP() << full.why();
  const std::string path = full.path() + "/port";
  try {
    WritePortFile(path, 9842);
    FAIL() << "a port file was written on a full file system";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(std::strerror(ENOSPC)), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  // The daemon: exit status 1, the reason on stderr, nothing left behind.
  pmu::testing::TempDir dir;
  const std::string config =
      dir.Write("c.toml", "[exporter]\nlisten = \"127.0.0.1:0\"\nport_file = \"" + path +
                              "\"\n[[events]]\nname = \"cs\"\nevent = \"context-switches\"\n");
  pmu::testing::Child daemon({pmu::testing::DaemonBinary(), "--config", config});
  const auto status = daemon.Wait(std::chrono::seconds(20));
  ASSERT_TRUE(status) << "the daemon kept running without its port file";
  EXPECT_EQ(*status, 1) << daemon.Stderr();
  EXPECT_NE(daemon.Stderr().find(std::strerror(ENOSPC)), std::string::npos) << daemon.Stderr();
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

config::Config FakeConfig() {
  config::Config cfg = config::DefaultConfig();
  cfg.exporter.listen.port = 0;
  cfg.sampling.interval = std::chrono::milliseconds(20);
  cfg.events = {{"cs", "context-switches", "", 0, 0}};
  return cfg;
}

bool CurlOk(const std::string& ca, int port) {
  const auto r = pmu::testing::RunCommand(
      {"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", ca,
       "https://127.0.0.1:" + std::to_string(port) + "/metrics"});
  return r.status == 0 && r.out == "200";
}

// Issue 11 item 1: a reload whose new key does not match its certificate,
// while the old certificate has become unreadable, used to leave no socket.
TEST(ServiceReload, FailedTlsReloadKeepsTheOldEndpointServing) {
  pmu::testing::TempDir dir;
  pmu::testing::TestPki pki;
  std::string why;
  if (!pmu::testing::MakeTestPki(dir, &pki, &why)) GTEST_SKIP() << why;
  if (!pmu::testing::HaveTool("curl")) GTEST_SKIP() << "curl is missing";
  const std::string cert = dir.path() + "/live.pem";
  std::filesystem::copy_file(pki.cert, cert);
  pmu::testing::FakePerf perf;
  config::Config cfg = FakeConfig();
  cfg.web.tls_cert_file = cert;
  cfg.web.tls_key_file = pki.key;
  Service service(cfg, perf);
  service.Start();
  service.Serve();
  const int port = service.bound_port();
  ASSERT_TRUE(CurlOk(pki.ca, port));

  std::filesystem::remove(cert);  // the old certificate is gone
  config::Config next = cfg;
  next.web.tls_cert_file = pki.cert;
  next.web.tls_key_file = pki.other_key;  // does not match
  EXPECT_THROW(service.Reload(next), std::runtime_error);
  EXPECT_TRUE(service.endpoint_listening());
  EXPECT_EQ(service.bound_port(), port);
  EXPECT_TRUE(CurlOk(pki.ca, port)) << "the old endpoint stopped serving";

  // A valid reload still applies (and rebinds: the key changes).
  next.web.tls_key_file = pki.key;
  service.Reload(next);
  EXPECT_TRUE(CurlOk(pki.ca, service.bound_port()));
  service.Stop();
}

// A listening socket on 127.0.0.1:port that holds the port until reset.
class PortThief {
 public:
  void Take(int port) {
    if (fd_ >= 0) return;
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int on = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd_, 1) != 0) {
      ADD_FAILURE() << "cannot take port " << port << ": " << std::strerror(errno);
    }
  }
  void Release() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  ~PortThief() { Release(); }

 private:
  int fd_ = -1;
};

double Gauge(const std::string& exposition, const std::string& name) {
  const auto found = pmu::testing::Select(pmu::testing::ParseExposition(exposition), name);
  return found.size() == 1 ? found[0].value : -1;
}

// The exposition once `name` reads `value` (rounds publish on the
// aggregator's own clock), or the last one after 5 s.
std::string RenderedOnceItSays(const Service& service, const std::string& name, double value) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string text = service.RenderMetrics();
  while (Gauge(text, name) != value && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    text = service.RenderMetrics();
  }
  return text;
}

// Issue 11 item 1: when even the old endpoint cannot be bound again, the
// daemon says so (log + pmu_exporter_endpoint_listening 0), keeps retrying,
// and the next reload binds even without a [web] change.
TEST(ServiceReload, LostEndpointIsReportedRetriedAndRestored) {
  pmu::testing::FakePerf perf;
  config::Config cfg = FakeConfig();
  cfg.exporter.listen.port = static_cast<uint16_t>(pmu::testing::FreeLoopbackPort());
  const int port = cfg.exporter.listen.port;
  Service service(cfg, perf);
  PortThief thief;
  std::atomic<bool> steal{false};
  service.set_before_bind([&] {
    if (steal) thief.Take(port);
  });
  service.Start();
  service.Serve();
  ASSERT_EQ(pmu::testing::HttpGet("127.0.0.1", port, "/metrics").status, 200);

  // A [web] change on the same address: the old server is closed, and the
  // port is taken before the new one (or the old one again) can bind it.
  config::Config next = cfg;
  next.web.max_connections = 100;
  steal = true;
  EXPECT_THROW(service.Reload(next), std::runtime_error);
  EXPECT_FALSE(service.endpoint_listening());
  EXPECT_FALSE(service.RetryEndpoint()) << "bound although the port is taken";
  const std::string down = RenderedOnceItSays(service, "pmu_exporter_endpoint_listening", 0);
  EXPECT_EQ(Gauge(down, "pmu_exporter_endpoint_listening"), 0) << down;
  EXPECT_GE(Gauge(down, "pmu_exporter_endpoint_bind_failures_total"), 2) << down;
  EXPECT_GE(Gauge(down, "pmu_exporter_http_requests_total"), 1)
      << "the endpoint counters must continue while it is down";

  // The next reload of the running configuration binds: it compares with
  // what really listens (nothing), not with the configuration.
  steal = false;
  thief.Release();
  service.Reload(cfg);
  EXPECT_TRUE(service.endpoint_listening());
  EXPECT_EQ(pmu::testing::HttpGet("127.0.0.1", port, "/metrics").status, 200);

  // And the retry loop restores it without a reload.
  steal = true;
  EXPECT_THROW(service.Reload(next), std::runtime_error);
  EXPECT_FALSE(service.endpoint_listening());
  steal = false;
  thief.Release();
  EXPECT_TRUE(service.RetryEndpoint());
  EXPECT_EQ(pmu::testing::HttpGet("127.0.0.1", port, "/metrics").status, 200);
  EXPECT_EQ(Gauge(RenderedOnceItSays(service, "pmu_exporter_endpoint_listening", 1),
                  "pmu_exporter_endpoint_listening"),
            1);
  service.Stop();
}

TEST(ServiceReload, MetricsPathChangeNeedsNoNewSocketAndPageIsEscaped) {
  pmu::testing::FakePerf perf;
  config::Config cfg = FakeConfig();
  Service service(cfg, perf);
  std::atomic<int> binds{0};
  service.set_before_bind([&] { ++binds; });
  service.Start();
  service.Serve();
  const int port = service.bound_port();
  config::Config next = cfg;
  next.exporter.metrics_path = "/a&b";
  service.Reload(next);
  EXPECT_EQ(binds.load(), 1) << "a metrics_path change rebound the endpoint";
  EXPECT_EQ(pmu::testing::HttpGet("127.0.0.1", port, "/a&b").status, 200);
  EXPECT_EQ(pmu::testing::HttpGet("127.0.0.1", port, "/metrics").status, 404);
  const auto page = pmu::testing::HttpGet("127.0.0.1", port, "/");
  EXPECT_NE(page.body.find("href=\"/a&amp;b\""), std::string::npos) << page.body;
  service.Stop();
}

}  // namespace
}  // namespace pmu::daemon
