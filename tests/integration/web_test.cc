// The daemon's /metrics endpoint behind TLS and basic authentication, as
// Prometheus would reach it across a network: real certificates made with
// openssl, real curl, real sockets.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "test_support.h"

namespace pmu::testing {
namespace {

using namespace std::chrono_literals;

class SecureDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!HaveTool("curl")) GTEST_SKIP() << "the curl command is missing";
    if (!MakeTestPki(dir_, &pki_, &why)) GTEST_SKIP() << why;
    RunResult hash = RunCommand({DaemonBinary(), "--hash-password"}, "s3cret\n");
    ASSERT_EQ(hash.status, 0) << hash.err;
    const std::string config = dir_.Write(
        "c.toml", "[exporter]\nlisten = \"127.0.0.1:0\"\nport_file = \"" + dir_.path() +
                      "/port\"\n[sampling]\ninterval = \"200ms\"\n[web]\ntls_cert_file = \"" +
                      pki_.cert + "\"\ntls_key_file = \"" + pki_.key +
                      "\"\n[[web.users]]\nname = \"prometheus\"\npassword_hash = \"" +
                      hash.out.substr(0, hash.out.find('\n')) + "\"\n");
    daemon_ = std::make_unique<Child>(std::vector<std::string>{DaemonBinary(), "--config", config});
    auto port = WaitForPortFile(dir_.path() + "/port", 10s);
    ASSERT_TRUE(port) << daemon_->Stderr();
    port_ = *port;
    url_ = "https://127.0.0.1:" + std::to_string(port_) + "/metrics";
  }

  // curl's HTTP status ("000" when no HTTP answer) and body.
  RunResult Curl(std::vector<std::string> extra) {
    std::vector<std::string> cmd = {"curl", "-s",          "-m", "5", "-o", dir_.path() + "/body",
                                    "-w",   "%{http_code}"};
    cmd.insert(cmd.end(), extra.begin(), extra.end());
    RunResult r = RunCommand(cmd);
    r.err = RunCommand({"cat", dir_.path() + "/body"}).out;  // the body, for assertions
    return r;
  }

  TempDir dir_;
  TestPki pki_;
  std::unique_ptr<Child> daemon_;
  int port_ = 0;
  std::string url_;
};

TEST_F(SecureDaemonTest, TrustedClientWithCredentialsGetsMetrics) {
  RunResult r = Curl({"--cacert", pki_.ca, "-u", "prometheus:s3cret", url_});
  EXPECT_EQ(r.out, "200") << daemon_->Stderr();
  EXPECT_NE(r.err.find("pmu_events_total{"), std::string::npos);
}

TEST_F(SecureDaemonTest, MissingOrWrongCredentialsGet401WithoutMetrics) {
  RunResult none = Curl({"--cacert", pki_.ca, url_});
  EXPECT_EQ(none.out, "401");
  EXPECT_EQ(none.err.find("pmu_events_total"), std::string::npos);
  RunResult wrong = Curl({"--cacert", pki_.ca, "-u", "prometheus:guess", url_});
  EXPECT_EQ(wrong.out, "401");
  RunResult stranger = Curl({"--cacert", pki_.ca, "-u", "root:s3cret", url_});
  EXPECT_EQ(stranger.out, "401");
}

TEST_F(SecureDaemonTest, PlainHttpToTheTlsPortGetsNothing) {
  HttpResponse r = HttpGet("127.0.0.1", port_, "/metrics", 2s);
  EXPECT_EQ(r.status, 0) << "a plaintext request got an HTTP answer";
  EXPECT_EQ(r.body.find("pmu_events_total"), std::string::npos);
  RunResult curl = Curl({"http://127.0.0.1:" + std::to_string(port_) + "/metrics"});
  EXPECT_NE(curl.out, "200");
}

TEST_F(SecureDaemonTest, UntrustedCertificateIsRefusedByTheClient) {
  RunResult r = Curl({"-u", "prometheus:s3cret", url_});
  EXPECT_EQ(r.out, "000") << "curl accepted a certificate from an unknown CA";
}

TEST_F(SecureDaemonTest, ScrapeSucceedsWithin1sWhile200IdleConnectionsAreOpen) {
  std::vector<int> idle;
  for (int i = 0; i < 200; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    idle.push_back(fd);
  }
  std::this_thread::sleep_for(100ms);
  auto start = std::chrono::steady_clock::now();
  RunResult r = Curl({"--cacert", pki_.ca, "-u", "prometheus:s3cret", url_});
  auto elapsed = std::chrono::steady_clock::now() - start;
  for (int fd : idle) close(fd);
  EXPECT_EQ(r.out, "200") << daemon_->Stderr();
  EXPECT_LT(elapsed, 1s);
  std::printf("scrape with 200 idle connections open: %lld ms (curl process included)\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()));
}

TEST(SecureDaemonCli, MismatchedKeyFailsAtStartNamingTheFile) {
  TempDir dir;
  TestPki pki;
  std::string why;
  if (!MakeTestPki(dir, &pki, &why)) GTEST_SKIP() << why;
  const std::string config =
      dir.Write("c.toml", "[exporter]\nlisten = \"127.0.0.1:0\"\n[web]\ntls_cert_file = \"" +
                              pki.cert + "\"\ntls_key_file = \"" + pki.other_key + "\"\n");
  RunResult r = RunCommand({DaemonBinary(), "--config", config});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find(pki.other_key), std::string::npos) << r.err;
}

}  // namespace
}  // namespace pmu::testing
