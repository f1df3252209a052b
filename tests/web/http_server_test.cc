// HttpServer against real sockets on the loopback interface, plus the
// request parser on byte strings. TLS material is generated per test suite
// with the openssl CLI; HTTPS clients are curl.
#include "pmu/web/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pmu/web/auth.h"
#include "pmu/web/http_parser.h"
#include "test_support.h"

namespace pmu::web {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using detail::ParseRequest;
using detail::ParseStatus;

// ---------------------------------------------------------------------------
// Parser

TEST(HttpParserTest, ParsesGetWithQueryAndHeaders) {
  const std::string raw =
      "GET /metrics?name=x HTTP/1.1\r\nHost: h\r\nX-Custom:  v a l \r\nAccept-Encoding: "
      "gzip\r\n\r\n";
  auto r = ParseRequest(raw, 8192);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.consumed, raw.size());
  EXPECT_EQ(r.request.method, "GET");
  EXPECT_EQ(r.request.path, "/metrics");
  EXPECT_EQ(r.request.query, "name=x");
  ASSERT_EQ(r.request.headers.size(), 3u);
  EXPECT_EQ(r.request.headers[1].first, "x-custom");
  EXPECT_EQ(r.request.headers[1].second, "v a l");
  EXPECT_TRUE(r.keep_alive);
  EXPECT_FALSE(r.http10);
  EXPECT_TRUE(r.accepts_gzip);
}

TEST(HttpParserTest, AcceptsBareLfLeadingBlankLinesAndAbsoluteForm) {
  auto r = ParseRequest("\r\nHEAD http://host:9842/metrics?a HTTP/1.1\nHost: h\n\n", 8192);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.request.method, "HEAD");
  EXPECT_EQ(r.request.path, "/metrics");
  EXPECT_EQ(r.request.query, "a");
}

TEST(HttpParserTest, IncompleteUntilBlankLine) {
  EXPECT_EQ(ParseRequest("", 8192).status, ParseStatus::kIncomplete);
  EXPECT_EQ(ParseRequest("GET / HTTP/1.1\r\nHost: h\r\n", 8192).status, ParseStatus::kIncomplete);
  EXPECT_EQ(ParseRequest("GET / HTTP/1.1\r\nHost: h\r\n\r", 8192).status, ParseStatus::kIncomplete);
}

TEST(HttpParserTest, OversizedHeadIs431EvenBeforeItEnds) {
  std::string big = "GET / HTTP/1.1\r\nX-Big: " + std::string(9000, 'a');
  auto partial = ParseRequest(big, 8192);
  EXPECT_EQ(partial.status, ParseStatus::kError);
  EXPECT_EQ(partial.error_status, 431);
  EXPECT_TRUE(partial.error_closes);
  auto complete = ParseRequest(big + "\r\n\r\n", 8192);
  EXPECT_EQ(complete.error_status, 431);
  // Exactly at the limit is fine.
  std::string fits = "GET / HTTP/1.1\r\nX: ";
  fits += std::string(100 - fits.size() - 4, 'b') + "\r\n\r\n";
  ASSERT_EQ(fits.size(), 100u);
  EXPECT_EQ(ParseRequest(fits, 100).status, ParseStatus::kComplete);
  EXPECT_EQ(ParseRequest(fits, 99).error_status, 431);
}

TEST(HttpParserTest, MalformedIs400) {
  for (const char* raw : {
           "GET\r\n\r\n", "GET /\r\n\r\n", "GET / HTTP/1.1 extra\r\n\r\n",
           "GET  / HTTP/1.1\r\n\r\n", "GET / HTTP/1.x\r\n\r\n", "GET / http/1.1\r\n\r\n",
           "GET metrics HTTP/1.1\r\n\r\n", "G(T / HTTP/1.1\r\n\r\n",
           "GET / HTTP/1.1\r\nNoColon\r\n\r\n", "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
           "GET / HTTP/1.1\r\nName : v\r\n\r\n", "GET / HTTP/1.1\r\n: v\r\n\r\n",
           "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
           "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
           "GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n",
           "\x16\x03\x01\x02\x05\x01\x07\x01\xfc\x03\x03\r\n\r\n",  // a TLS ClientHello
       }) {
    auto r = ParseRequest(raw, 8192);
    EXPECT_EQ(r.status, ParseStatus::kError) << raw;
    EXPECT_EQ(r.error_status, 400) << raw;
    EXPECT_TRUE(r.error_closes) << raw;
  }
  EXPECT_EQ(ParseRequest("GET / HTTP/2.0\r\n\r\n", 8192).error_status, 505);
}

TEST(HttpParserTest, BodyIsRefusedWith413) {
  for (const char* raw : {"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                          "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"}) {
    auto r = ParseRequest(raw, 8192);
    EXPECT_EQ(r.status, ParseStatus::kError) << raw;
    EXPECT_EQ(r.error_status, 413) << raw;
    EXPECT_TRUE(r.error_closes) << raw;
  }
  EXPECT_EQ(ParseRequest("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 8192).status,
            ParseStatus::kComplete);
}

TEST(HttpParserTest, OtherMethodsAre405AndKeepTheConnectionWithoutBody) {
  auto no_body = ParseRequest("DELETE /metrics HTTP/1.1\r\nHost: h\r\n\r\nGET", 8192);
  EXPECT_EQ(no_body.status, ParseStatus::kError);
  EXPECT_EQ(no_body.error_status, 405);
  EXPECT_FALSE(no_body.error_closes);
  EXPECT_EQ(no_body.consumed, 37u);
  auto with_body = ParseRequest("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 8192);
  EXPECT_EQ(with_body.error_status, 405);
  EXPECT_TRUE(with_body.error_closes);
  EXPECT_EQ(ParseRequest("OPTIONS * HTTP/1.1\r\n\r\n", 8192).error_status, 405);
}

TEST(HttpParserTest, PipelinedRequestsParseOneAtATime) {
  std::string raw = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c";
  auto first = ParseRequest(raw, 8192);
  ASSERT_EQ(first.status, ParseStatus::kComplete);
  EXPECT_EQ(first.request.path, "/a");
  raw.erase(0, first.consumed);
  auto second = ParseRequest(raw, 8192);
  ASSERT_EQ(second.status, ParseStatus::kComplete);
  EXPECT_EQ(second.request.method, "HEAD");
  EXPECT_EQ(second.request.path, "/b");
  raw.erase(0, second.consumed);
  EXPECT_EQ(raw, "GET /c");
  EXPECT_EQ(ParseRequest(raw, 8192).status, ParseStatus::kIncomplete);
}

TEST(HttpParserTest, ConnectionSemantics) {
  EXPECT_TRUE(ParseRequest("GET / HTTP/1.1\r\n\r\n", 8192).keep_alive);
  EXPECT_FALSE(ParseRequest("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n", 8192).keep_alive);
  EXPECT_FALSE(ParseRequest("GET / HTTP/1.1\r\nConnection: te, close\r\n\r\n", 8192).keep_alive);
  auto http10 = ParseRequest("GET / HTTP/1.0\r\n\r\n", 8192);
  EXPECT_TRUE(http10.http10);
  EXPECT_FALSE(http10.keep_alive);
  EXPECT_TRUE(ParseRequest("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 8192).keep_alive);
}

TEST(HttpParserTest, AcceptEncoding) {
  EXPECT_TRUE(detail::AcceptsGzip("gzip"));
  EXPECT_TRUE(detail::AcceptsGzip("deflate, GZIP;q=0.5"));
  EXPECT_TRUE(detail::AcceptsGzip("x-gzip"));
  EXPECT_TRUE(detail::AcceptsGzip("*"));
  EXPECT_TRUE(detail::AcceptsGzip("gzip;q=0.001"));
  EXPECT_FALSE(detail::AcceptsGzip(""));
  EXPECT_FALSE(detail::AcceptsGzip("identity"));
  EXPECT_FALSE(detail::AcceptsGzip("deflate, br"));
  EXPECT_FALSE(detail::AcceptsGzip("gzip;q=0"));
  EXPECT_FALSE(detail::AcceptsGzip("gzip; q=0.000"));
  EXPECT_FALSE(detail::AcceptsGzip("*, gzip;q=0"));
  EXPECT_FALSE(detail::AcceptsGzip("*;q=0"));
  EXPECT_FALSE(detail::AcceptsGzip("gzipper"));
}

TEST(HttpParserTest, Base64AndBasicCredentials) {
  EXPECT_EQ(detail::DecodeBase64(""), "");
  EXPECT_EQ(detail::DecodeBase64("Zg=="), "f");
  EXPECT_EQ(detail::DecodeBase64("Zm8="), "fo");
  EXPECT_EQ(detail::DecodeBase64("Zm9v"), "foo");
  EXPECT_EQ(detail::DecodeBase64("Zm9vYg"), "foob");  // unpadded
  EXPECT_EQ(detail::DecodeBase64("+/+/"), "\xfb\xff\xbf");
  EXPECT_FALSE(detail::DecodeBase64("Zm9v!"));
  EXPECT_FALSE(detail::DecodeBase64("Z"));
  EXPECT_FALSE(detail::DecodeBase64("Zg="));
  EXPECT_FALSE(detail::DecodeBase64("Z==="));
  EXPECT_FALSE(detail::DecodeBase64("Zg==Zg=="));
  EXPECT_FALSE(detail::DecodeBase64("Zm 9v"));

  // "prometheus:s3cret"
  auto creds = detail::ParseBasicAuthorization("Basic cHJvbWV0aGV1czpzM2NyZXQ=");
  ASSERT_TRUE(creds);
  EXPECT_EQ(creds->user, "prometheus");
  EXPECT_EQ(creds->password, "s3cret");
  // "a:b:c": the password may hold colons.
  auto colons = detail::ParseBasicAuthorization("basic   YTpiOmM=");
  ASSERT_TRUE(colons);
  EXPECT_EQ(colons->user, "a");
  EXPECT_EQ(colons->password, "b:c");
  EXPECT_FALSE(detail::ParseBasicAuthorization("Bearer cHJvbWV0aGV1czpzM2NyZXQ="));
  EXPECT_FALSE(detail::ParseBasicAuthorization("Basic"));
  EXPECT_FALSE(detail::ParseBasicAuthorization("Basic !!!!"));
  EXPECT_FALSE(detail::ParseBasicAuthorization("Basic bm9jb2xvbg=="));  // "nocolon"
  EXPECT_FALSE(detail::ParseBasicAuthorization("Basic YTpiAGM="));      // "a:b\0c"
}

// ---------------------------------------------------------------------------
// Helpers for the server tests

std::string BigBody() {
  std::string body;
  for (int cpu = 0; cpu < 2000; ++cpu) {
    body += "pmu_cycles_total{cpu=\"" + std::to_string(cpu) + "\"} " + std::to_string(cpu * 7919) +
            "\n";
  }
  return body;
}

std::string HugeBody() {
  std::string body(8 << 20, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 23);
  return body;
}

std::atomic<int> g_shared_compressions{0};

HttpResponse TestHandler(const HttpRequest& request) {
  HttpResponse response;
  if (request.path == "/metrics") {
    response.body = "pmu_up 1\n";
  } else if (request.path == "/big") {
    response.body = BigBody();
  } else if (request.path == "/medium") {
    // The size of a small host's exposition (19 KB with 2 CPUs).
    response.body = BigBody().substr(0, 20000);
  } else if (request.path == "/shared") {
    // As the service serves /metrics: one rendering and one compressed copy
    // shared by every request.
    static const auto kText = std::make_shared<const std::string>(BigBody());
    static const auto kZipped = std::make_shared<const std::string>(*GzipCompress(*kText));
    response.shared_body = kText;
    response.gzip_body = [] {
      ++g_shared_compressions;
      return kZipped;
    };
  } else if (request.path == "/huge") {
    static const std::string kHuge = HugeBody();
    response.body = kHuge;
  } else if (request.path == "/throw") {
    throw std::runtime_error("handler exploded");
  } else {
    response.status = 404;
    response.body = "not found\n";
  }
  response.headers.emplace_back("X-Test", "yes");
  return response;
}

bool CheckCredentials(const std::string& user, const std::string& password) {
  return user == "prometheus" && password == "s3cret";
}

std::unique_ptr<HttpServer> StartServer(HttpServerOptions options = {},
                                        HttpServer::Authenticator authenticator = nullptr) {
  auto server =
      std::make_unique<HttpServer>(std::move(options), TestHandler, std::move(authenticator));
  server->Start();
  return server;
}

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// A blocking-with-deadline TCP client that keeps unread bytes between calls,
// so pipelined and keep-alive responses can be read one by one.
class Client {
 public:
  // `source`: an IPv4 address to connect from (another loopback address
  // is another client to the server's per-address limits).
  static std::unique_ptr<Client> Connect(int port, const std::string& host = "127.0.0.1",
                                         int rcvbuf = 0, const std::string& source = "") {
    bool v6 = host.find(':') != std::string::npos;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (!source.empty()) {
      sockaddr_in from{};
      from.sin_family = AF_INET;
      inet_pton(AF_INET, source.c_str(), &from.sin_addr);
      if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) {
        close(fd);
        return nullptr;
      }
    }
    sockaddr_storage storage{};
    socklen_t length = 0;
    if (v6) {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(static_cast<uint16_t>(port));
      inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr);
      length = sizeof(sockaddr_in6);
    } else {
      auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(static_cast<uint16_t>(port));
      inet_pton(AF_INET, host.c_str(), &sin->sin_addr);
      length = sizeof(sockaddr_in);
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0) {
      close(fd);
      return nullptr;
    }
    return std::unique_ptr<Client>(new Client(fd));
  }
  ~Client() { close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool Send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads one response; `head` for a HEAD request (no body whatever the length).
  std::optional<RawResponse> ReadResponse(bool head = false,
                                          std::chrono::milliseconds timeout = 5s) {
    auto deadline = Clock::now() + timeout;
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) return std::nullopt;
    }
    RawResponse response;
    std::istringstream lines(buffer_.substr(0, end));
    std::string line;
    std::getline(lines, line);
    if (line.compare(0, 9, "HTTP/1.1 ") != 0) return std::nullopt;
    response.status = std::atoi(line.c_str() + 9);
    while (std::getline(lines, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      size_t colon = line.find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      response.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    buffer_.erase(0, end + 4);
    size_t length = head ? 0 : std::stoul(response.headers["content-length"]);
    while (buffer_.size() < length) {
      if (!Fill(deadline)) return std::nullopt;
    }
    response.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return response;
  }

  // Everything until the peer closes (true) or the timeout passes (false).
  bool ReadUntilClose(std::string& out, std::chrono::milliseconds timeout = 5s) {
    auto deadline = Clock::now() + timeout;
    while (!eof_) {
      if (!Fill(deadline)) break;
    }
    out = std::move(buffer_);
    buffer_.clear();
    return eof_;
  }

  // True when the peer closes (EOF or reset) within `timeout`.
  bool ClosedWithin(std::chrono::milliseconds timeout) {
    std::string ignored;
    return ReadUntilClose(ignored, timeout);
  }

  int fd() const { return fd_; }

  // True when nothing arrived and the peer has not closed, right now.
  bool QuietAndOpen() {
    pollfd p{fd_, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
  }

 private:
  explicit Client(int fd) : fd_(fd) {}

  // Appends whatever arrives before `deadline`; false on timeout or EOF.
  bool Fill(Clock::time_point deadline) {
    if (eof_) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) {
      eof_ = true;  // EOF or reset
      return false;
    }
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_;
  std::string buffer_;
  bool eof_ = false;
};

std::optional<RawResponse> Exchange(int port, const std::string& request, bool head = false) {
  auto client = Client::Connect(port);
  if (!client || !client->Send(request)) return std::nullopt;
  return client->ReadResponse(head);
}

std::string Get(const std::string& path, const std::string& extra_headers = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers + "\r\n";
}

// One HTTPS GET with OpenSSL on a blocking socket, verifying the server
// certificate against `ca_file` for IP 127.0.0.1; the raw response (until the
// server closes) or "" when the handshake or verification fails. In-process,
// so a timing does not include starting a curl process.
std::string TlsGet(int port, const std::string& ca_file, const std::string& path) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx || SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) return "";
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  auto client = Client::Connect(port);
  if (!client) return "";
  timeval tv{5, 0};
  setsockopt(client->fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  if (!ssl || SSL_set_fd(ssl.get(), client->fd()) != 1 ||
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), "127.0.0.1") != 1 ||
      SSL_connect(ssl.get()) != 1) {
    return "";
  }
  const std::string request = Get(path, "Connection: close\r\n");
  size_t written = 0;
  if (SSL_write_ex(ssl.get(), request.data(), request.size(), &written) != 1) return "";
  std::string response;
  char buf[16384];
  size_t got = 0;
  while (SSL_read_ex(ssl.get(), buf, sizeof(buf), &got) == 1) response.append(buf, got);
  return response;
}

// Sends `request` on a fresh connection and expects `status`, announced and
// followed by a close.
void ExpectAnsweredAndClosed(int port, const std::string& request, int status) {
  SCOPED_TRACE("expecting " + std::to_string(status));
  auto client = Client::Connect(port);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Send(request));
  auto response = client->ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, status);
  EXPECT_EQ(response->headers["connection"], "close");
  EXPECT_TRUE(client->ClosedWithin(2s));
}

std::optional<std::string> Gunzip(const std::string& data) {
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 16) != Z_OK) return std::nullopt;
  std::string out;
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  int rc = Z_OK;
  while (rc == Z_OK) {
    char buf[65536];
    stream.next_out = reinterpret_cast<Bytef*>(buf);
    stream.avail_out = sizeof(buf);
    rc = inflate(&stream, Z_NO_FLUSH);
    out.append(buf, sizeof(buf) - stream.avail_out);
  }
  inflateEnd(&stream);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout = 2s) {
  auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Opens `n` connections that send nothing; returns them once the server has
// accepted all (fewer on failure).
std::vector<std::unique_ptr<Client>> OpenIdleConnections(const HttpServer& server, size_t n) {
  std::vector<std::unique_ptr<Client>> clients;
  for (size_t i = 0; i < n; ++i) {
    auto client = Client::Connect(server.port());
    if (!client) break;
    clients.push_back(std::move(client));
  }
  if (!WaitFor([&] { return server.stats().connections_accepted == n; })) clients.clear();
  return clients;
}

double MillisecondsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string ReadFile(const std::string& path) {
  std::string content;
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return content;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), file)) > 0) content.append(buf, n);
  std::fclose(file);
  return content;
}

// ---------------------------------------------------------------------------
// Plain HTTP

TEST(HttpServerTest, GetReturnsTheHandlersBody) {
  auto server = StartServer();
  EXPECT_FALSE(server->tls());
  ASSERT_GT(server->port(), 0);
  auto response = testing::HttpGet("127.0.0.1", server->port(), "/metrics");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "pmu_up 1\n");
  EXPECT_EQ(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response.headers["content-length"], "9");
  EXPECT_EQ(response.headers["connection"], "close");
  EXPECT_EQ(response.headers["x-test"], "yes");
  EXPECT_FALSE(response.headers["date"].empty());
  EXPECT_EQ(server->stats().requests, 1u);
  EXPECT_EQ(server->stats().connections_accepted, 1u);
}

TEST(HttpServerTest, HeadHasContentLengthButNoBody) {
  auto server = StartServer();
  auto client = Client::Connect(server->port());
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Send("HEAD /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  std::string raw;
  ASSERT_TRUE(client->ReadUntilClose(raw));
  size_t end = raw.find("\r\n\r\n");
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(raw.substr(0, 15), "HTTP/1.1 200 OK");
  EXPECT_NE(raw.find("Content-Length: " + std::to_string(BigBody().size()) + "\r\n"),
            std::string::npos)
      << raw;
  EXPECT_EQ(raw.size(), end + 4) << "HEAD response carried a body";
}

TEST(HttpServerTest, UnknownPathGetsTheHandlers404) {
  auto server = StartServer();
  auto response = testing::HttpGet("127.0.0.1", server->port(), "/nope");
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.body, "not found\n");
}

TEST(HttpServerTest, HandlerExceptionGives500) {
  auto server = StartServer();
  EXPECT_EQ(testing::HttpGet("127.0.0.1", server->port(), "/throw").status, 500);
}

TEST(HttpServerTest, PostGets405WithAllow) {
  auto server = StartServer();
  auto client = Client::Connect(server->port());
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Send("POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto response = client->ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 405);
  EXPECT_EQ(response->headers["allow"], "GET, HEAD");
  // Without a body the connection stays usable.
  ASSERT_TRUE(client->Send(Get("/metrics")));
  auto next = client->ReadResponse();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);

  // With a body it is answered and closed.
  ExpectAnsweredAndClosed(
      server->port(), "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd", 405);
}

TEST(HttpServerTest, BodyHugeHeadersAndGarbageGetAnErrorAndClose) {
  auto server = StartServer();
  ExpectAnsweredAndClosed(server->port(), Get("/metrics", "Content-Length: 5\r\n") + "hello", 413);
  ExpectAnsweredAndClosed(server->port(), Get("/metrics", "Transfer-Encoding: chunked\r\n"), 413);
  ExpectAnsweredAndClosed(server->port(),
                          Get("/metrics", "X-Big: " + std::string(20000, 'z') + "\r\n"), 431);
  ExpectAnsweredAndClosed(server->port(), std::string("\x16\x03\x01\x00\xa5 garbage\r\n\r\n", 17),
                          400);
  ExpectAnsweredAndClosed(server->port(), "GET / HTTP/3.0\r\n\r\n", 505);
}

TEST(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  auto server = StartServer();
  auto client = Client::Connect(server->port());
  ASSERT_TRUE(client);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(client->Send(Get("/metrics")));
    auto response = client->ReadResponse();
    ASSERT_TRUE(response) << "request " << i;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "pmu_up 1\n");
    EXPECT_EQ(response->headers.count("connection"), 0u);  // HTTP/1.1 default: keep-alive
  }
  EXPECT_TRUE(client->QuietAndOpen());
  EXPECT_EQ(server->stats().connections_accepted, 1u);
  EXPECT_EQ(server->stats().requests, 2u);
}

TEST(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  auto server = StartServer();
  auto client = Client::Connect(server->port());
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Send(Get("/metrics") + Get("/nope") +
                           "HEAD /big HTTP/1.1\r\nHost: x\r\n\r\n" +
                           Get("/metrics", "Connection: close\r\n")));
  std::vector<int> statuses;
  for (int i = 0; i < 4; ++i) {
    auto response = client->ReadResponse(/*head=*/i == 2);
    ASSERT_TRUE(response) << "response " << i;
    statuses.push_back(response->status);
  }
  EXPECT_EQ(statuses, (std::vector<int>{200, 404, 200, 200}));
  EXPECT_TRUE(client->ClosedWithin(2s));
}

TEST(HttpServerTest, Http10ClosesUnlessKeepAlive) {
  auto server = StartServer();
  ExpectAnsweredAndClosed(server->port(), "GET /metrics HTTP/1.0\r\n\r\n", 200);

  auto keeping = Client::Connect(server->port());
  ASSERT_TRUE(keeping);
  ASSERT_TRUE(keeping->Send("GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  auto kept = keeping->ReadResponse();
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->headers["connection"], "keep-alive");
  EXPECT_TRUE(keeping->QuietAndOpen());
}

TEST(HttpServerTest, GzipWhenAskedAndTheBodyIsLarge) {
  auto server = StartServer();
  const std::string big = BigBody();
  auto gzipped = Exchange(server->port(), Get("/big", "Accept-Encoding: deflate, gzip\r\n"));
  ASSERT_TRUE(gzipped);
  EXPECT_EQ(gzipped->headers["content-encoding"], "gzip");
  EXPECT_EQ(gzipped->headers["vary"], "Accept-Encoding");
  EXPECT_LT(gzipped->body.size(), big.size() / 2);
  auto inflated = Gunzip(gzipped->body);
  ASSERT_TRUE(inflated);
  EXPECT_TRUE(*inflated == big) << "inflated to " << inflated->size() << " bytes";

  auto identity = Exchange(server->port(), Get("/big"));
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->headers.count("content-encoding"), 0u);
  EXPECT_TRUE(identity->body == big) << "got " << identity->body.size() << " bytes";

  auto refused = Exchange(server->port(), Get("/big", "Accept-Encoding: gzip;q=0\r\n"));
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->headers.count("content-encoding"), 0u);

  auto small = Exchange(server->port(), Get("/metrics", "Accept-Encoding: gzip\r\n"));
  ASSERT_TRUE(small);
  EXPECT_EQ(small->headers.count("content-encoding"), 0u);
  EXPECT_EQ(small->body, "pmu_up 1\n");

  // Up to 64 KiB the body goes out as it is: compressing it would cost the
  // host more than sending it.
  auto medium = Exchange(server->port(), Get("/medium", "Accept-Encoding: gzip\r\n"));
  ASSERT_TRUE(medium);
  EXPECT_EQ(medium->headers.count("content-encoding"), 0u);
  EXPECT_EQ(medium->body.size(), 20000u);

  // A shared body is sent from its shared compressed copy.
  const int compressions = g_shared_compressions.load();
  auto shared = Exchange(server->port(), Get("/shared", "Accept-Encoding: gzip\r\n"));
  ASSERT_TRUE(shared);
  EXPECT_EQ(shared->headers["content-encoding"], "gzip");
  auto shared_inflated = Gunzip(shared->body);
  ASSERT_TRUE(shared_inflated);
  EXPECT_TRUE(*shared_inflated == big);
  EXPECT_EQ(g_shared_compressions.load(), compressions + 1);
  auto shared_plain = Exchange(server->port(), Get("/shared"));
  ASSERT_TRUE(shared_plain);
  EXPECT_TRUE(shared_plain->body == big);
  EXPECT_EQ(g_shared_compressions.load(), compressions + 1);

  // HEAD announces the length GET would send.
  auto head = Exchange(server->port(), "HEAD /big HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
                       /*head=*/true);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->headers["content-length"], std::to_string(gzipped->body.size()));
}

TEST(HttpServerTest, LargeResponseReachesASlowReaderWhole) {
  auto server = StartServer();
  auto client = Client::Connect(server->port(), "127.0.0.1", /*rcvbuf=*/4096);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Send(Get("/huge")));
  std::this_thread::sleep_for(50ms);  // let the server fill the socket and wait for EPOLLOUT
  auto response = client->ReadResponse(false, 20s);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(response->body == HugeBody())
      << "body of " << response->body.size() << " bytes differs";
  // The connection is still usable afterwards.
  ASSERT_TRUE(client->Send(Get("/metrics")));
  auto next = client->ReadResponse();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "pmu_up 1\n");
}

TEST(HttpServerTest, BasicAuthOverPlainHttp) {
  std::atomic<int> calls{0};
  auto server = StartServer({}, [&](const std::string& user, const std::string& password) {
    ++calls;
    return CheckCredentials(user, password);
  });
  auto missing = Exchange(server->port(), Get("/metrics"));
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  EXPECT_EQ(missing->headers["www-authenticate"], "Basic realm=\"pmu-exporter\"");
  EXPECT_EQ(missing->body.find("pmu_up"), std::string::npos);

  // "prometheus:wrong"
  auto wrong = Exchange(server->port(),
                        Get("/metrics", "Authorization: Basic cHJvbWV0aGV1czp3cm9uZw==\r\n"));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);

  auto malformed = Exchange(server->port(), Get("/metrics", "Authorization: Basic %%%\r\n"));
  ASSERT_TRUE(malformed);
  EXPECT_EQ(malformed->status, 401);

  // "prometheus:s3cret"
  auto right = Exchange(server->port(),
                        Get("/metrics", "Authorization: Basic cHJvbWV0aGV1czpzM2NyZXQ=\r\n"));
  ASSERT_TRUE(right);
  EXPECT_EQ(right->status, 200);
  EXPECT_EQ(right->body, "pmu_up 1\n");

  EXPECT_EQ(server->stats().auth_failures, 3u);
  EXPECT_EQ(calls.load(), 2);  // the missing and malformed ones never reach it
}

// "Authorization: Basic ..." for user:password.
std::string BasicHeader(const std::string& user, const std::string& password) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const std::string in = user + ":" + password;
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) n |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    if (i + 2 < in.size()) n |= static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kAlphabet[n & 63] : '=';
  }
  return "Authorization: Basic " + out + "\r\n";
}

int StatusFrom(const std::string& source, int port, const std::string& user,
               const std::string& password, std::map<std::string, std::string>* headers = nullptr) {
  auto client = Client::Connect(port, "127.0.0.1", 0, source);
  if (!client || !client->Send(Get("/metrics", BasicHeader(user, password)))) return 0;
  auto response = client->ReadResponse(false, 3s);
  if (!response) return 0;
  if (headers) *headers = response->headers;
  return response->status;
}

TEST(HttpServerAuthTest, SlowHashingDoesNotBlockTheServingThread) {
  // Issue 11: each wrong password cost a full hash on the event loop, so a
  // few clients sending bad passwords starved every scrape.
  std::mutex mutex;
  std::condition_variable released_cv;
  bool released = false;
  std::atomic<int> blocked{0};
  auto authenticator = [&](const std::string& user, const std::string& password) {
    if (user == "mallory") {
      ++blocked;
      std::unique_lock lock(mutex);
      released_cv.wait(lock, [&] { return released; });
      return false;
    }
    return CheckCredentials(user, password);
  };
  auto release = [&] {
    {
      std::lock_guard lock(mutex);
      released = true;
    }
    released_cv.notify_all();
  };
  struct ReleaseOnExit {
    std::function<void()> fn;
    ~ReleaseOnExit() { fn(); }
  } guard{release};
  HttpServerOptions options;
  options.auth_workers = 2;
  auto server = StartServer(options, authenticator);
  ASSERT_EQ(StatusFrom("", server->port(), "prometheus", "s3cret"), 200);  // now cached
  std::vector<std::unique_ptr<Client>> attackers;
  for (int i = 0; i < 4; ++i) {
    auto client = Client::Connect(server->port());
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->Send(Get("/metrics", BasicHeader("mallory", "guess" + std::to_string(i)))));
    attackers.push_back(std::move(client));
  }
  ASSERT_TRUE(WaitFor([&] { return blocked.load() == 2; })) << "the workers never got the hashes";
  // Both workers are stuck hashing; the serving thread is not.
  auto start = Clock::now();
  EXPECT_EQ(StatusFrom("", server->port(), "prometheus", "s3cret"), 200);
  EXPECT_EQ(Exchange(server->port(), Get("/metrics"))->status, 401);  // no credentials
  std::printf("authorised scrape with both hashing workers busy: %.2f ms\n",
              MillisecondsSince(start));
  release();
  for (auto& client : attackers) {
    auto response = client->ReadResponse();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 401);
  }
}

TEST(HttpServerAuthTest, VerdictsAreCachedForSuccessAndFailure) {
  std::atomic<int> calls{0};
  auto server = StartServer({}, [&](const std::string& user, const std::string& password) {
    ++calls;
    return CheckCredentials(user, password);
  });
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(StatusFrom("", server->port(), "prometheus", "s3cret"), 200);
    EXPECT_EQ(StatusFrom("", server->port(), "prometheus", "wrong"), 401);
    EXPECT_EQ(StatusFrom("", server->port(), "nobody", "wrong"), 401);
  }
  EXPECT_EQ(calls.load(), 3) << "each credential should be verified once";
}

TEST(HttpServerAuthTest, RepeatedFailuresFromOneAddressGet429WithRetryAfter) {
  std::atomic<int> calls{0};
  HttpServerOptions options;
  options.auth_max_failures = 3;
  options.auth_failure_window = 30s;
  auto server = StartServer(options, [&](const std::string& user, const std::string& password) {
    ++calls;
    return CheckCredentials(user, password);
  });
  if (!Client::Connect(server->port(), "127.0.0.1", 0, "127.0.0.2")) {
    GTEST_SKIP() << "cannot connect from 127.0.0.2 (no 127/8 loopback)";
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(StatusFrom("127.0.0.3", server->port(), "prometheus", "guess" + std::to_string(i)),
              401);
  }
  std::map<std::string, std::string> headers;
  // Limited: even the right password is neither checked nor accepted.
  EXPECT_EQ(StatusFrom("127.0.0.3", server->port(), "prometheus", "s3cret", &headers), 429);
  const int retry_after = std::atoi(headers["retry-after"].c_str());
  EXPECT_GE(retry_after, 1);
  EXPECT_LE(retry_after, 30);
  EXPECT_EQ(StatusFrom("127.0.0.3", server->port(), "nobody", "x"), 429);
  EXPECT_EQ(calls.load(), 3);
  // Another address is not affected.
  EXPECT_EQ(StatusFrom("127.0.0.2", server->port(), "prometheus", "s3cret"), 200);
  EXPECT_EQ(server->stats().auth_failures, 5u);
}

TEST(HttpServerAuthTest, UnknownAndKnownUsersTakeAlikeThroughTheServer) {
  PasswordChecker checker({{"prometheus", HashPassword("s3cret")}});
  auto server = StartServer({}, [&](const std::string& user, const std::string& password) {
    return checker.Check(user, password);
  });
  auto median_ms = [&](const std::string& user) {
    std::vector<double> ms;
    for (int i = 0; i < 5; ++i) {
      auto start = Clock::now();
      EXPECT_EQ(StatusFrom("", server->port(), user, "wrong" + std::to_string(i)), 401);
      ms.push_back(MillisecondsSince(start));
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  };
  const double known = median_ms("prometheus");
  const double unknown = median_ms("nobody");
  std::printf("401 median: known user %.1f ms, unknown user %.1f ms\n", known, unknown);
  EXPECT_GT(unknown, known / 3) << "an unknown user answers much faster";
  EXPECT_LT(unknown, known * 3) << "an unknown user answers much slower";
}

TEST(HttpServerTest, HtmlEscapeMakesMarkupInert) {
  EXPECT_EQ(HtmlEscape("/metrics"), "/metrics");
  EXPECT_EQ(HtmlEscape("\"><script>a&b'</script>"),
            "&quot;&gt;&lt;script&gt;a&amp;b&#39;&lt;/script&gt;");
}

TEST(HttpServerTest, ListenConflictAndBadAddressThrowActionableErrors) {
  auto server = StartServer();
  HttpServerOptions same;
  same.port = server->port();
  try {
    HttpServer second(same, TestHandler);
    FAIL() << "a second server bound the same port";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(
        std::string(e.what()).find("cannot listen on 127.0.0.1:" + std::to_string(server->port()) +
                                   ": Address already in use"),
        std::string::npos)
        << e.what();
  }
  HttpServerOptions bad;
  bad.host = "localhost";
  try {
    HttpServer third(bad, TestHandler);
    FAIL() << "a host name was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid listen address 'localhost'"), std::string::npos)
        << e.what();
  }
}

TEST(HttpServerTest, Ipv6Loopback) {
  int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_loopback;
  bool have_v6 = probe >= 0 && bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  if (probe >= 0) close(probe);
  if (!have_v6) GTEST_SKIP() << "this host cannot bind [::1] (no IPv6 loopback)";

  HttpServerOptions options;
  options.host = "::1";
  options.ipv6 = true;
  auto server = StartServer(options);
  auto client = Client::Connect(server->port(), "::1");
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Send(Get("/metrics")));
  auto response = client->ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "pmu_up 1\n");
}

// ---------------------------------------------------------------------------
// Limits and timeouts

TEST(HttpServerLimitsTest, ScrapeSucceedsQuicklyWith200IdleConnectionsOpen) {
  auto server = StartServer();
  auto idle = OpenIdleConnections(*server, 200);
  ASSERT_EQ(idle.size(), 200u);
  auto start = Clock::now();
  auto response = testing::HttpGet("127.0.0.1", server->port(), "/metrics", 2s);
  double ms = MillisecondsSince(start);
  std::printf("scrape with 200 idle connections open: %.2f ms\n", ms);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "pmu_up 1\n");
  EXPECT_LT(ms, 1000.0);
  for (auto& client : idle) EXPECT_TRUE(client->QuietAndOpen());
}

TEST(HttpServerLimitsTest, AtTheCapTheOldestConnectionWithoutARequestMakesRoom) {
  HttpServerOptions options;
  options.max_connections = 10;
  auto server = StartServer(options);
  auto clients = OpenIdleConnections(*server, 10);
  ASSERT_EQ(clients.size(), 10u);
  auto eleventh = Client::Connect(server->port());
  ASSERT_TRUE(eleventh);
  auto start = Clock::now();
  EXPECT_TRUE(clients[0]->ClosedWithin(1s)) << "the oldest silent connection was kept";
  std::printf("oldest connection closed %.2f ms after an 11th arrived\n", MillisecondsSince(start));
  EXPECT_EQ(server->stats().connections_rejected, 1u);
  for (size_t i = 1; i < clients.size(); ++i) EXPECT_TRUE(clients[i]->QuietAndOpen());
  // The newcomer is served, and so are the older ones still open.
  ASSERT_TRUE(eleventh->Send(Get("/metrics")));
  auto response = eleventh->ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  ASSERT_TRUE(clients[3]->Send(Get("/metrics")));
  response = clients[3]->ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST(HttpServerLimitsTest, SlowlorisAtTheCapDoesNotLockOutAScraper) {
  // Issue 11: connections trickling a request head held every slot and the
  // scraper's connection was the one closed.
  HttpServerOptions options;
  options.max_connections = 10;
  auto server = StartServer(options);
  // A keep-alive scraper that has been served holds its connection.
  auto regular = Client::Connect(server->port());
  ASSERT_TRUE(regular);
  ASSERT_TRUE(regular->Send(Get("/metrics")));
  ASSERT_TRUE(regular->ReadResponse());
  std::vector<std::unique_ptr<Client>> slow;
  for (size_t round = 0; round < 30; ++round) {  // three times the cap
    auto client = Client::Connect(server->port());
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->Send("GET /metrics HTTP/1.1\r\nX-Slow: "));
    slow.push_back(std::move(client));
    std::this_thread::sleep_for(2ms);
  }
  for (int scrape = 0; scrape < 5; ++scrape) {
    auto response = Exchange(server->port(), Get("/metrics"));
    ASSERT_TRUE(response) << "scrape " << scrape << " got no answer";
    EXPECT_EQ(response->status, 200);
    ASSERT_TRUE(slow[static_cast<size_t>(scrape)]->Send("a"));  // trickle
  }
  ASSERT_TRUE(regular->Send(Get("/metrics")));
  auto again = regular->ReadResponse();
  ASSERT_TRUE(again) << "the served keep-alive connection was sacrificed";
  EXPECT_EQ(again->status, 200);
  size_t closed = 0;
  for (auto& client : slow) closed += client->ClosedWithin(50ms) ? 1u : 0u;
  EXPECT_GE(closed, 21u);  // at most 9 slots beside the regular scraper
}

TEST(HttpServerLimitsTest, TrickledBytesDoNotExtendTheHeadDeadline) {
  HttpServerOptions options;
  options.request_timeout = 300ms;
  auto server = StartServer(options);
  auto client = Client::Connect(server->port());
  ASSERT_TRUE(client);
  const std::string head = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: 0123456789abcdef";
  auto start = Clock::now();
  bool closed = false;
  for (char c : head) {
    if (!client->Send(std::string(1, c)) || !client->QuietAndOpen()) {
      closed = true;
      break;
    }
    std::this_thread::sleep_for(25ms);  // well within the timeout per byte
  }
  closed = closed || client->ClosedWithin(2s);
  double ms = MillisecondsSince(start);
  std::printf("connection trickling 1 byte per 25 ms closed after %.1f ms\n", ms);
  EXPECT_TRUE(closed);
  EXPECT_LE(ms, 1000.0) << "each byte extended the deadline";
  EXPECT_EQ(server->stats().requests, 0u);
}

TEST(HttpServerLimitsTest, DescriptorLimitBelowTheCapClosesExcessConnections) {
  // Issue 11: with RLIMIT_NOFILE below max_connections, accept(2) failed
  // with EMFILE and the excess connections stalled in the backlog, the
  // scraper's among them.
  if (!testing::HaveTool("python3")) GTEST_SKIP() << "needs python3 for the client process";
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  size_t open_now = 0;  // new descriptors take the lowest free numbers
  for (int fd = 0; fd < 65536 && fd < static_cast<int>(saved.rlim_cur); ++fd) {
    if (fcntl(fd, F_GETFD) != -1) ++open_now;
  }
  rlimit low = saved;
  low.rlim_cur = open_now + 150;
  if (low.rlim_cur > saved.rlim_cur) GTEST_SKIP() << "the descriptor limit is already low";
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  struct Restore {
    rlimit limit;
    ~Restore() { setrlimit(RLIMIT_NOFILE, &limit); }
  } restore{saved};
  auto server = StartServer();  // max_connections 512
  const size_t cap = server->max_connections();
  std::printf("RLIMIT_NOFILE %zu: cap %zu\n", static_cast<size_t>(low.rlim_cur), cap);
  EXPECT_LT(cap, 150u);
  // The clients live in another process, which raises its own limit.
  const char* script = R"(
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, n = int(sys.argv[1]), int(sys.argv[2])
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
time.sleep(0.5)
closed = 0
for c in conns:
    c.setblocking(False)
    try:
        closed += c.recv(1) == b""
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
s = socket.create_connection(("127.0.0.1", port), timeout=3)
s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
try:
    reply = s.recv(100).decode(errors="replace").split("\r\n")[0]
except OSError as e:
    reply = "error " + str(e)
print(f"closed={closed}")
print(reply)
)";
  auto result = testing::RunCommand(
      {"python3", "-c", script, std::to_string(server->port()), std::to_string(cap + 40)});
  std::printf("%s%s", result.out.c_str(), result.err.c_str());
  EXPECT_EQ(result.status, 0) << result.err;
  const size_t at = result.out.find("closed=");
  ASSERT_NE(at, std::string::npos) << result.out;
  EXPECT_GE(std::atoi(result.out.c_str() + at + 7), 40) << "excess connections were left open";
  EXPECT_NE(result.out.find("HTTP/1.1 200 OK"), std::string::npos) << "the scraper stalled";
}

TEST(HttpServerLimitsTest, RequestTimeoutClosesSilentAndSlowClients) {
  HttpServerOptions options;
  options.request_timeout = 300ms;
  auto server = StartServer(options);

  auto silent = Client::Connect(server->port());
  ASSERT_TRUE(silent);
  auto start = Clock::now();
  EXPECT_TRUE(silent->ClosedWithin(3s));
  double silent_ms = MillisecondsSince(start);
  std::printf("silent connection closed after %.1f ms (request_timeout 300 ms)\n", silent_ms);
  EXPECT_GE(silent_ms, 200.0);
  EXPECT_LE(silent_ms, 2000.0);
  EXPECT_EQ(server->stats().timeouts, 1u);

  auto slow = Client::Connect(server->port());
  ASSERT_TRUE(slow);
  start = Clock::now();
  ASSERT_TRUE(slow->Send("GET /metrics HTTP/1.1\r\n"));
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(slow->Send("Host: x\r\n"));  // progress does not extend the deadline
  EXPECT_TRUE(slow->ClosedWithin(3s));
  double slow_ms = MillisecondsSince(start);
  EXPECT_GE(slow_ms, 200.0);
  EXPECT_LE(slow_ms, 2000.0);
  EXPECT_EQ(server->stats().timeouts, 2u);
  EXPECT_EQ(server->stats().requests, 0u);
}

TEST(HttpServerLimitsTest, IdleKeepAliveConnectionIsClosedAfterIdleTimeout) {
  HttpServerOptions options;
  options.idle_timeout = 200ms;
  auto server = StartServer(options);
  auto client = Client::Connect(server->port());
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Send(Get("/metrics")));
  ASSERT_TRUE(client->ReadResponse());
  auto start = Clock::now();
  EXPECT_TRUE(client->ClosedWithin(3s));
  double ms = MillisecondsSince(start);
  EXPECT_GE(ms, 100.0);
  EXPECT_LE(ms, 2000.0);
  EXPECT_EQ(server->stats().timeouts, 0u);  // idling between requests is no timeout
}

TEST(HttpServerLimitsTest, StopWithOpenConnectionsIsFast) {
  auto server = StartServer();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 50; ++i) {
    clients.push_back(Client::Connect(server->port()));
    ASSERT_TRUE(clients.back());
    if (i % 2 == 0) {
      ASSERT_TRUE(clients.back()->Send("GET /metrics HTTP/1.1\r\n"));
    }
  }
  ASSERT_TRUE(WaitFor([&] { return server->stats().connections_accepted == 50; }));
  auto start = Clock::now();
  server->Stop();
  double ms = MillisecondsSince(start);
  std::printf("Stop() with 50 open connections: %.3f ms\n", ms);
  EXPECT_LT(ms, 100.0);
  for (auto& client : clients) EXPECT_TRUE(client->ClosedWithin(1s));
  EXPECT_FALSE(Client::Connect(server->port())) << "still listening after Stop()";
  server->Stop();  // idempotent
}

// ---------------------------------------------------------------------------
// TLS

class HttpServerTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::HaveTool("openssl") || !testing::HaveTool("curl")) return;
    dir_ = new testing::TempDir();
    testing::TestPki pki;
    std::string why;
    if (!testing::MakeTestPki(*dir_, &pki, &why)) {
      setup_error_ = new std::string(why);
      return;
    }
    ca_ = pki.ca;
    cert_ = pki.cert;
    key_ = pki.key;
    other_key_ = pki.other_key;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (!dir_) GTEST_SKIP() << "needs the openssl and curl commands";
    ASSERT_EQ(setup_error_, nullptr) << *setup_error_;
  }

  static HttpServerOptions TlsOptions() {
    HttpServerOptions options;
    options.tls_cert_file = cert_;
    options.tls_key_file = key_;
    return options;
  }

  struct CurlResult {
    int exit_status = -1;
    int http_code = 0;
    std::string body;
    std::string err;
  };
  // curl over HTTPS; `args` go before the URL(s).
  static CurlResult Curl(int port, const std::string& path, std::vector<std::string> args,
                         int repeat = 1) {
    std::vector<std::string> argv = {"curl", "-sS", "--max-time", "10", "-w", "%{http_code}\n"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (int i = 0; i < repeat; ++i) {
      argv.insert(argv.end(),
                  {"-o", BodyFile(i), "https://127.0.0.1:" + std::to_string(port) + path});
    }
    auto result = testing::RunCommand(argv);
    CurlResult out;
    out.exit_status = result.status;
    out.err = result.err;
    out.http_code = std::atoi(result.out.c_str());  // the first transfer's
    for (int i = 0; i < repeat; ++i) {
      out.body += ReadFile(BodyFile(i));
      std::remove(BodyFile(i).c_str());
    }
    return out;
  }
  static std::string BodyFile(int i) { return dir_->path() + "/body" + std::to_string(i); }

  static inline testing::TempDir* dir_ = nullptr;
  static inline std::string* setup_error_ = nullptr;
  static inline std::string ca_, cert_, key_, other_key_;
};

TEST_F(HttpServerTlsTest, CurlWithTheCaGets200) {
  auto server = StartServer(TlsOptions());
  EXPECT_TRUE(server->tls());
  auto result = Curl(server->port(), "/metrics", {"--cacert", ca_});
  EXPECT_EQ(result.exit_status, 0) << result.err;
  EXPECT_EQ(result.http_code, 200);
  EXPECT_EQ(result.body, "pmu_up 1\n");
}

TEST_F(HttpServerTlsTest, KeepAliveGzipAndLargeBodiesOverTls) {
  auto server = StartServer(TlsOptions());
  // Two URLs in one curl run reuse the connection.
  auto twice = Curl(server->port(), "/big", {"--cacert", ca_, "--compressed"}, 2);
  EXPECT_EQ(twice.exit_status, 0) << twice.err;
  EXPECT_TRUE(twice.body == BigBody() + BigBody()) << "got " << twice.body.size() << " bytes";
  EXPECT_EQ(server->stats().connections_accepted, 1u);
  EXPECT_EQ(server->stats().requests, 2u);

  auto huge = Curl(server->port(), "/huge", {"--cacert", ca_});
  EXPECT_EQ(huge.exit_status, 0) << huge.err;
  EXPECT_TRUE(huge.body == HugeBody()) << "got " << huge.body.size() << " bytes";
}

TEST_F(HttpServerTlsTest, ClientVanishingMidResponseLeavesTheServerServing) {
  auto server = StartServer(TlsOptions());
  // curl gives up while the 8 MiB body is still being written: the server's
  // next SSL_write meets a reset socket and must drop only that connection.
  auto aborted =
      Curl(server->port(), "/huge", {"--cacert", ca_, "--limit-rate", "512k", "--max-time", "0.3"});
  EXPECT_EQ(aborted.exit_status, 28) << aborted.err;  // CURLE_OPERATION_TIMEDOUT
  EXPECT_LT(aborted.body.size(), HugeBody().size());
  auto after = Curl(server->port(), "/metrics", {"--cacert", ca_});
  EXPECT_EQ(after.http_code, 200) << after.err;
  EXPECT_EQ(after.body, "pmu_up 1\n");
}

TEST_F(HttpServerTlsTest, PlainHttpToTheTlsPortGetsNoHttpResponse) {
  auto server = StartServer(TlsOptions());
  auto client = Client::Connect(server->port());
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Send(Get("/metrics")));
  std::string raw;
  EXPECT_TRUE(client->ReadUntilClose(raw, 3s)) << "connection left open";
  EXPECT_NE(raw.compare(0, 5, "HTTP/"), 0) << raw;
  EXPECT_EQ(raw.find("pmu_up"), std::string::npos);
  EXPECT_EQ(server->stats().requests, 0u);
}

TEST_F(HttpServerTlsTest, CurlWithoutTheCaFailsVerification) {
  auto server = StartServer(TlsOptions());
  auto result = Curl(server->port(), "/metrics", {});
  EXPECT_EQ(result.exit_status, 60) << result.err;  // CURLE_PEER_FAILED_VERIFICATION
  EXPECT_EQ(result.body.find("pmu_up"), std::string::npos);
}

TEST_F(HttpServerTlsTest, BadOrMismatchedKeyThrowsWithTheFileName) {
  const std::string garbage = dir_->Write("garbage.key", "-----BEGIN PRIVATE KEY-----\nnope\n");
  auto expect_throw = [&](HttpServerOptions options, const std::string& needle) {
    try {
      HttpServer server(options, TestHandler);
      ADD_FAILURE() << "no exception; expected one naming " << needle;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  HttpServerOptions bad_key = TlsOptions();
  bad_key.tls_key_file = garbage;
  expect_throw(bad_key, "cannot load TLS key " + garbage + ": ");

  HttpServerOptions mismatched = TlsOptions();
  mismatched.tls_key_file = other_key_;
  expect_throw(mismatched, "TLS key " + other_key_ + " does not match certificate " + cert_);

  HttpServerOptions missing_cert = TlsOptions();
  missing_cert.tls_cert_file = dir_->path() + "/missing.pem";
  expect_throw(missing_cert, "cannot load TLS certificate " + missing_cert.tls_cert_file);

  HttpServerOptions no_key = TlsOptions();
  no_key.tls_key_file.clear();
  expect_throw(no_key, "both a certificate and a key");
}

TEST_F(HttpServerTlsTest, BasicAuthOverTls) {
  auto server = StartServer(TlsOptions(), CheckCredentials);
  auto missing = Curl(server->port(), "/metrics", {"--cacert", ca_});
  EXPECT_EQ(missing.http_code, 401) << missing.err;
  EXPECT_EQ(missing.body.find("pmu_up"), std::string::npos);
  auto wrong = Curl(server->port(), "/metrics", {"--cacert", ca_, "-u", "prometheus:nope"});
  EXPECT_EQ(wrong.http_code, 401) << wrong.err;
  auto right = Curl(server->port(), "/metrics", {"--cacert", ca_, "-u", "prometheus:s3cret"});
  EXPECT_EQ(right.http_code, 200) << right.err;
  EXPECT_EQ(right.body, "pmu_up 1\n");
  EXPECT_EQ(server->stats().auth_failures, 2u);
}

TEST_F(HttpServerTlsTest, ScrapeSucceedsQuicklyWith200IdleConnectionsOpen) {
  auto server = StartServer(TlsOptions());
  auto idle = OpenIdleConnections(*server, 200);
  ASSERT_EQ(idle.size(), 200u);
  auto start = Clock::now();
  std::string raw = TlsGet(server->port(), ca_, "/metrics");
  double ms = MillisecondsSince(start);
  std::printf("HTTPS scrape (handshake included) with 200 idle connections: %.2f ms\n", ms);
  EXPECT_EQ(raw.compare(0, 15, "HTTP/1.1 200 OK"), 0) << raw;
  EXPECT_TRUE(raw.ends_with("\r\n\r\npmu_up 1\n")) << raw;
  EXPECT_LT(ms, 1000.0);
  auto result = Curl(server->port(), "/metrics", {"--cacert", ca_});  // and curl, untimed
  EXPECT_EQ(result.http_code, 200) << result.err;
  for (auto& client : idle) EXPECT_TRUE(client->QuietAndOpen());
}

TEST_F(HttpServerTlsTest, HalfOpenHandshakesAtTheCapDoNotLockOutAScraper) {
  // Issue 11: 512 half-open TLS handshakes failed every scrape.
  HttpServerOptions options = TlsOptions();
  options.max_connections = 10;
  auto server = StartServer(options);
  std::vector<std::unique_ptr<Client>> half_open;
  for (int i = 0; i < 30; ++i) {
    auto client = Client::Connect(server->port());
    ASSERT_TRUE(client);
    // A handshake record header announcing 512 bytes, then one byte of it.
    ASSERT_TRUE(client->Send(std::string("\x16\x03\x01\x02\x00\x01", 6)));
    half_open.push_back(std::move(client));
    std::this_thread::sleep_for(2ms);
  }
  for (int scrape = 0; scrape < 3; ++scrape) {
    std::string raw = TlsGet(server->port(), ca_, "/metrics");
    EXPECT_EQ(raw.compare(0, 15, "HTTP/1.1 200 OK"), 0) << "scrape " << scrape << ": " << raw;
  }
  size_t closed = 0;
  for (auto& client : half_open) closed += client->ClosedWithin(50ms) ? 1u : 0u;
  EXPECT_GE(closed, 20u);
}

TEST_F(HttpServerTlsTest, HalfOpenHandshakeIsClosedAtTheRequestTimeout) {
  HttpServerOptions options = TlsOptions();
  options.request_timeout = 300ms;
  auto server = StartServer(options);
  auto client = Client::Connect(server->port());
  ASSERT_TRUE(client);
  auto start = Clock::now();
  ASSERT_TRUE(client->Send(std::string("\x16\x03\x01\x02\x00", 5)));
  for (int i = 0; i < 8 && client->QuietAndOpen(); ++i) {
    client->Send(std::string(1, '\x01'));  // trickle the ClientHello
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(client->ClosedWithin(2s));
  double ms = MillisecondsSince(start);
  EXPECT_GE(ms, 200.0);
  EXPECT_LE(ms, 1000.0);
  EXPECT_EQ(server->stats().timeouts, 1u);
}

}  // namespace
}  // namespace pmu::web
