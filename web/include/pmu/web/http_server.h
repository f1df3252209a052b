// HttpServer: the /metrics endpoint. A small event-driven HTTP/1.1 server
// (one epoll thread) with optional TLS (OpenSSL) and HTTP basic
// authentication.
//
// Why not prometheus-cpp's Exposer: Debian 12's civetweb 1.15 dlopens
// libssl.so and calls SSL_get_peer_certificate, which OpenSSL 3 no longer
// exports, so every HTTPS request crashes it; and its thread-per-connection
// model lets a few hundred idle clients stall every scrape. Here an idle
// connection costs one fd and a small buffer, never a thread.
//
// Guarantees:
//  - At most `max_connections` connections, and never more than the
//    descriptor limit allows: the effective cap is derived from
//    RLIMIT_NOFILE at construction (and logged). At the cap a new connection
//    is accepted by closing the oldest connection that has not yet sent a
//    complete request (TLS handshakes included); failing that, the oldest
//    one waiting between keep-alive requests or lingering after a final
//    response. Only when every connection is busy (being answered or
//    authorised) is the new one closed at once. Should accept(2) still run
//    out of descriptors, a spare one is freed so the excess connection is
//    closed rather than left stalled in the backlog.
//  - A request (line + headers) larger than `max_request_bytes` gets 431 and
//    the connection is closed; a request body is refused (413) — only GET and
//    HEAD are served (others get 405).
//  - A connection must deliver a complete request head (and, first, finish
//    its TLS handshake) within `request_timeout` of being accepted; bytes
//    that trickle in do not extend that deadline. Keep-alive connections idle
//    for longer than `idle_timeout` are closed. The clock of a later request
//    on a keep-alive connection starts at its first byte. A response the
//    client stops reading for `request_timeout` is abandoned.
//  - Pipelined requests are answered one after the other; the next one is
//    not read before the previous response has been written.
//  - With TLS, plaintext requests get no HTTP answer (the handshake fails and
//    the connection is closed).
//  - With an authenticator, requests without valid credentials get 401 with
//    `WWW-Authenticate: Basic realm="pmu-exporter"` and no body of metrics.
//    The authenticator runs on `auth_workers` threads, never on the serving
//    thread; verdicts (successes and failures) for the last
//    `auth_cache_entries` credentials are cached under a keyed hash, so a
//    repeat costs no hashing and an unknown user answers like a known one.
//    A client address (IPv4 address or IPv6 /64) with `auth_max_failures`
//    failed attempts within `auth_failure_window` gets 429 with Retry-After
//    on every request until the window ends; its requests are then neither
//    hashed nor looked up. When `auth_queue_limit` credentials already wait
//    for a worker, a new one gets 503 with Retry-After.
//  - The handler runs on the server thread; it must not block for long.
//  - `Accept-Encoding: gzip` is honoured for bodies larger than 1 KiB.
//
// Thread safety: construct, Start and Stop from one thread; the handler is
// called on the server thread, the authenticator on the worker threads
// (concurrently: it must be thread-safe).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pmu::web {

struct HttpServerOptions {
  // IPv4 or IPv6 literal (brackets optional); "" = all addresses. An IPv6
  // socket is always IPV6_V6ONLY, "::" included: one server serves one
  // address family, and the host says which.
  std::string host = "127.0.0.1";
  bool ipv6 = false;          // host is IPv6 (implied by a ':' in host)
  int port = 0;               // 0 = pick a free port
  std::string tls_cert_file;  // PEM certificate (chain); "" = plain HTTP
  std::string tls_key_file;   // PEM private key
  size_t max_connections = 512;
  size_t max_request_bytes = 8192;
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
  // Basic authentication (used only with an authenticator).
  size_t auth_workers = 2;
  size_t auth_cache_entries = 1024;
  size_t auth_max_failures = 10;
  std::chrono::seconds auth_failure_window{60};
  size_t auth_max_addresses = 4096;  // client addresses the failure limiter remembers
  size_t auth_queue_limit = 256;
};

struct HttpRequest {
  std::string method;                                        // "GET", "HEAD"
  std::string path;                                          // without the query string
  std::string query;                                         // after '?', "" if none
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; version=0.0.4; charset=utf-8";
  std::string body;
  // When set, the body instead of `body`: written from the shared string
  // without a copy (one rendering served to many requests).
  std::shared_ptr<const std::string> shared_body;
  // With shared_body: its gzip-compressed copy, asked for only when the
  // client accepts gzip (null: compress here).
  std::function<std::shared_ptr<const std::string>()> gzip_body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// `input` as a gzip member at zlib's fastest level (every scrape with
// Accept-Encoding: gzip, as Prometheus sends, pays for it once per snapshot;
// the level's cost and ratio are in docs/BENCHMARKS.md); nullopt when it
// cannot.
std::optional<std::string> GzipCompress(const std::string& input);

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  // Returns true when the user and password are valid. nullptr = no auth.
  // Called on the worker threads, possibly concurrently; may be slow.
  using Authenticator = std::function<bool(const std::string& user, const std::string& password)>;

  // Binds and listens (and loads the certificate and key) in the
  // constructor: throws std::runtime_error with an actionable message
  // ("cannot listen on 127.0.0.1:9842: Address already in use",
  // "cannot load TLS key /etc/...: ...") on failure. Does not start serving.
  HttpServer(HttpServerOptions options, Handler handler, Authenticator authenticator = nullptr);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void Start();  // starts the server thread; does nothing after Stop()
  // Idempotent; closes all connections; returns within milliseconds, or once
  // the password hashes already running (at most auth_workers) are done.
  void Stop();
  int port() const;  // the bound port (useful with port 0)
  bool tls() const;

  // Counters for self-metrics (any thread).
  struct Stats {
    uint64_t connections_accepted = 0;
    uint64_t connections_rejected = 0;  // closed to stay within the cap (new or evicted)
    uint64_t requests = 0;              // responses sent, error responses included
    uint64_t auth_failures = 0;         // 401, 429 and 503 answers to unauthorised requests
    uint64_t timeouts = 0;  // request_timeout expiries; idle keep-alive closes are not counted
  };
  Stats stats() const;
  // The connection cap in force: max_connections, lowered to what
  // RLIMIT_NOFILE leaves.
  size_t max_connections() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// `text` with & < > " ' replaced by character references: safe inside HTML
// text and quoted attribute values.
std::string HtmlEscape(std::string_view text);

}  // namespace pmu::web
