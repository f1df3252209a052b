#include "pmu/web/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define ZLIB_CONST
#include <zlib.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include "pmu/web/auth_gate.h"
#include "pmu/web/http_parser.h"

namespace pmu::web {
namespace {

using Clock = std::chrono::steady_clock;

// Bodies up to this size go out uncompressed even to a client that accepts
// gzip: compressing one costs the host more CPU than sending the difference
// (docs/ARCHITECTURE.md, "Why our own HTTP server").
constexpr size_t kGzipMinBytes = 64 * 1024;
constexpr size_t kReadChunk = 16384;
constexpr uint64_t kListenId = 0;
constexpr uint64_t kWakeId = 1;
constexpr uint64_t kHashDoneId = 2;
// Descriptors left to the rest of the process when the connection cap is
// derived from RLIMIT_NOFILE: at least this many, and at least as many as
// are open when the server starts (a reload opens a second set of them).
constexpr size_t kFdHeadroom = 64;
// After a final response, unread client bytes are drained this long (and at
// most this much) before close, so the kernel does not answer them with a RST
// that could destroy the response in flight.
constexpr auto kLingerTime = std::chrono::milliseconds(1000);
// Polling before blocking (Run): after a blocking wait shorter than
// kSpinAfterBlock, up to kSpinFor of non-blocking waits.
constexpr auto kSpinAfterBlock = std::chrono::microseconds(500);
constexpr auto kSpinFor = std::chrono::microseconds(50);
constexpr size_t kLingerMaxBytes = 1 << 20;
// accept4 failing for lack of fds/memory leaves the listener readable; it is
// taken out of epoll this long instead of spinning.
constexpr auto kAcceptPause = std::chrono::milliseconds(100);

std::string ErrnoText(int err) { return std::generic_category().message(err); }

// Drains this thread's OpenSSL error queue into one line.
std::string OpenSslErrors() {
  std::string text;
  while (unsigned long err = ERR_get_error()) {
    std::array<char, 256> buf{};
    ERR_error_string_n(err, buf.data(), buf.size());
    if (!text.empty()) text += "; ";
    text += buf.data();
  }
  return text.empty() ? "unknown OpenSSL error" : text;
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

SslCtxPtr CreateTlsContext(const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() != key_file.empty()) {
    throw std::runtime_error("TLS needs both a certificate and a key file (got certificate '" +
                             cert_file + "', key '" + key_file + "')");
  }
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) throw std::runtime_error("cannot create a TLS context: " + OpenSslErrors());
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) {
    throw std::runtime_error("cannot require TLS 1.2: " + OpenSslErrors());
  }
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Partial writes and a moving buffer suit the retry-on-EPOLLOUT loop; idle
  // keep-alive connections give their record buffers back.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1) {
    throw std::runtime_error("cannot load TLS certificate " + cert_file + ": " + OpenSslErrors());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    // OpenSSL already compares the key with the certificate here.
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      throw std::runtime_error("TLS key " + key_file + " does not match certificate " + cert_file +
                               ": " + OpenSslErrors());
    }
    throw std::runtime_error("cannot load TLS key " + key_file + ": " + OpenSslErrors());
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    throw std::runtime_error("TLS key " + key_file + " does not match certificate " + cert_file +
                             ": " + OpenSslErrors());
  }
  return ctx;
}

struct ListenAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_INET;
  std::string display;  // "127.0.0.1:9842", "[::1]:9842"
};

ListenAddress ResolveListenAddress(const HttpServerOptions& options) {
  std::string host = options.host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  bool ipv6 = options.ipv6 || host.find(':') != std::string::npos;
  if (host.empty()) host = ipv6 ? "::" : "0.0.0.0";
  if (options.port < 0 || options.port > 65535) {
    throw std::runtime_error("invalid listen port " + std::to_string(options.port));
  }
  auto port = htons(static_cast<uint16_t>(options.port));
  ListenAddress address;
  address.display = (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(options.port);
  if (ipv6) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = port;
    if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) != 1) {
      throw std::runtime_error("invalid listen address '" + options.host +
                               "': expected an IPv6 literal such as ::1");
    }
    address.family = AF_INET6;
    address.length = sizeof(sockaddr_in6);
  } else {
    auto* sin = reinterpret_cast<sockaddr_in*>(&address.storage);
    sin->sin_family = AF_INET;
    sin->sin_port = port;
    if (inet_pton(AF_INET, host.c_str(), &sin->sin_addr) != 1) {
      throw std::runtime_error("invalid listen address '" + options.host +
                               "': expected an IPv4 literal such as 127.0.0.1");
    }
    address.length = sizeof(sockaddr_in);
  }
  return address;
}

// IMF-fixdate (RFC 9110 5.6.7), independent of the locale.
std::string HttpDate() {
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::array<char, 64> buf{};
  std::snprintf(buf.data(), buf.size(), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                kDays[static_cast<size_t>(tm.tm_wday)], tm.tm_mday,
                kMonths[static_cast<size_t>(tm.tm_mon)], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf.data();
}

// One deflate state per thread, reset for each body: deflateInit2 allocates
// about 256 KiB (window, hash chains, pending buffer), which glibc maps
// fresh and the kernel then faults in page by page, at every compression.
class Deflater {
 public:
  Deflater()
      : ready_(deflateInit2(&stream_, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) ==
               Z_OK) {}
  ~Deflater() {
    if (ready_) deflateEnd(&stream_);
  }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  // The stream, reset for a new gzip member; null when zlib could not start.
  z_stream* Fresh() {
    if (!ready_ || deflateReset(&stream_) != Z_OK) return nullptr;
    return &stream_;
  }

 private:
  z_stream stream_{};
  bool ready_;
};

}  // namespace

std::optional<std::string> GzipCompress(const std::string& input) {
  if (input.size() > UINT_MAX) return std::nullopt;
  thread_local Deflater deflater;
  z_stream* fresh = deflater.Fresh();
  if (fresh == nullptr) return std::nullopt;
  z_stream& stream = *fresh;
  std::string output(deflateBound(&stream, static_cast<uLong>(input.size())), '\0');
  stream.next_in = reinterpret_cast<const Bytef*>(input.data());
  stream.avail_in = static_cast<uInt>(input.size());
  stream.next_out = reinterpret_cast<Bytef*>(output.data());
  stream.avail_out = static_cast<uInt>(output.size());
  int rc = deflate(&stream, Z_FINISH);
  output.resize(stream.total_out);
  if (rc != Z_STREAM_END) return std::nullopt;
  return output;
}

namespace {

HttpResponse PlainResponse(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.content_type = "text/plain; charset=utf-8";
  response.body = std::move(body);
  return response;
}

HttpResponse Unauthorized() {
  HttpResponse response = PlainResponse(401, "Unauthorized\n");
  response.headers.emplace_back("WWW-Authenticate", "Basic realm=\"pmu-exporter\"");
  return response;
}

HttpResponse RetryLater(int status, std::chrono::seconds after) {
  HttpResponse response = PlainResponse(status, std::string(detail::StatusReason(status)) + "\n");
  response.headers.emplace_back("Retry-After", std::to_string(after.count()));
  return response;
}

// Descriptors open in this process now (0 when /proc is not mounted).
size_t OpenDescriptorCount() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  size_t count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count > 0 ? count - 1 : 0;  // not the directory's own descriptor
}

bool IsFramingHeader(const std::string& name) {
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "content-length" || lower == "connection" || lower == "transfer-encoding" ||
         lower == "content-encoding" || lower == "content-type" || lower == "date";
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, Handler handler, Authenticator authenticator);
  ~Impl();

  void Start();
  void Stop();
  int port() const { return port_; }
  bool tls() const { return tls_ctx_ != nullptr; }
  Stats stats() const;
  size_t max_connections() const { return cap_; }

 private:
  // kAuthorizing: a complete request waits for a hashing worker's verdict;
  // nothing is read meanwhile.
  enum class State { kHandshake, kReading, kAuthorizing, kWriting, kLingering };
  enum class Io { kOk, kWantRead, kWantWrite, kEof, kError };

  struct Connection {
    uint64_t id = 0;
    Fd fd;
    SslPtr ssl;
    State state = State::kReading;
    std::string in;
    std::string out;
    size_t out_offset = 0;
    std::shared_ptr<const std::string> out_body;  // a shared body, written after `out`
    size_t body_offset = 0;
    bool close_after_write = false;
    bool idle = false;  // keep-alive, no byte of the next request yet
    uint32_t events = 0;
    Clock::time_point deadline;
    bool deadline_is_timeout = true;  // false for idle and lingering expiry
    size_t lingered_bytes = 0;
    bool head_complete = false;   // a complete request head has arrived once
    Clock::time_point since;      // entered its current state (eviction order)
    std::string address;          // the failure limiter's key for the peer
    detail::ParseResult request;  // the request being answered
  };

  // Server thread only, from here on.
  void Run();
  void AcceptAll();
  bool EvictOne();
  void Drive(Connection& conn);
  bool ProcessRequest(Connection& conn);
  void Answer(Connection& conn, const HttpResponse& response);
  void QueueResponse(Connection& conn, const HttpResponse& response, bool head, bool gzip,
                     bool keep_alive, bool http10);
  HttpResponse Respond(const HttpRequest& request);
  void Authorize(Connection& conn);
  void TakeVerdicts();
  void StartLinger(Connection& conn);
  Io Read(Connection& conn, char* buf, size_t size, size_t& done);
  Io Write(Connection& conn, const char* buf, size_t size, size_t& done);
  // Writes what is left of the head and then of the body.
  Io WriteResponse(Connection& conn, size_t& done);
  // sendmsg of `parts` on a plain (non-TLS) connection.
  Io SendPlain(Connection& conn, iovec* parts, size_t count, size_t& done);
  Io SslResult(Connection& conn, int rc);
  void SetInterest(Connection& conn, uint32_t events);
  void SetDeadline(Connection& conn, Clock::duration after, bool is_timeout);
  void Close(Connection& conn);
  void ExpireDeadlines();
  int WaitTimeoutMs() const;

  const HttpServerOptions options_;
  const Handler handler_;
  const Authenticator authenticator_;
  SslCtxPtr tls_ctx_;
  Fd listen_fd_;
  Fd epoll_fd_;
  Fd wake_fd_;
  Fd spare_fd_;  // given up when accept(2) runs out of descriptors
  int port_ = 0;
  size_t cap_ = 0;  // max_connections within RLIMIT_NOFILE
  // With an authenticator (server thread only, but the workers' own).
  std::unique_ptr<detail::CredentialCache> auth_cache_;
  std::unique_ptr<detail::FailureLimiter> auth_limiter_;
  std::unique_ptr<detail::HashWorkers> hash_workers_;
  std::thread thread_;
  bool started_ = false;
  bool stopped_ = false;

  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::vector<uint64_t> pending_;  // ids to drive after this epoll round
  std::set<uint64_t> unserved_;    // no complete request head yet; oldest first
  std::set<std::pair<Clock::time_point, uint64_t>> deadlines_;
  uint64_t next_id_ = kHashDoneId + 1;
  std::optional<Clock::time_point> accept_paused_until_;
  bool accept_failing_ = false;

  std::atomic<uint64_t> connections_accepted_{0};
  std::atomic<uint64_t> connections_rejected_{0};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> auth_failures_{0};
  std::atomic<uint64_t> timeouts_{0};
};

HttpServer::Impl::Impl(HttpServerOptions options, Handler handler, Authenticator authenticator)
    : options_(std::move(options)),
      handler_(std::move(handler)),
      authenticator_(std::move(authenticator)) {
  if (!options_.tls_cert_file.empty() || !options_.tls_key_file.empty()) {
    tls_ctx_ = CreateTlsContext(options_.tls_cert_file, options_.tls_key_file);
  }
  ListenAddress address = ResolveListenAddress(options_);
  auto fail = [&](const char* what) {
    int err = errno;
    throw std::runtime_error(std::string(what) + " " + address.display + ": " + ErrnoText(err));
  };
  listen_fd_ = Fd(socket(address.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (listen_fd_.get() < 0) fail("cannot create a socket for");
  int on = 1;
  if (setsockopt(listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0) {
    fail("cannot set SO_REUSEADDR on");
  }
  // One family per socket, also for "::": the host names exactly what is served.
  if (address.family == AF_INET6 &&
      setsockopt(listen_fd_.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) {
    fail("cannot set IPV6_V6ONLY on");
  }
  if (bind(listen_fd_.get(), reinterpret_cast<const sockaddr*>(&address.storage), address.length) !=
          0 ||
      listen(listen_fd_.get(), SOMAXCONN) != 0) {
    fail("cannot listen on");
  }
  sockaddr_storage bound{};
  socklen_t bound_length = sizeof(bound);
  if (getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&bound), &bound_length) != 0) {
    fail("cannot read the bound port of");
  }
  port_ = ntohs(address.family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  epoll_fd_ = Fd(epoll_create1(EPOLL_CLOEXEC));
  if (epoll_fd_.get() < 0) fail("cannot create an epoll instance for");
  wake_fd_ = Fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (wake_fd_.get() < 0) fail("cannot create an eventfd for");
  epoll_event listen_event{};
  listen_event.events = EPOLLIN;
  listen_event.data.u64 = kListenId;
  epoll_event wake_event{};
  wake_event.events = EPOLLIN;
  wake_event.data.u64 = kWakeId;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, listen_fd_.get(), &listen_event) != 0 ||
      epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &wake_event) != 0) {
    fail("cannot watch with epoll the listener on");
  }
  if (authenticator_) {
    auth_cache_ = std::make_unique<detail::CredentialCache>(options_.auth_cache_entries);
    auth_limiter_ = std::make_unique<detail::FailureLimiter>(
        options_.auth_max_failures, options_.auth_failure_window, options_.auth_max_addresses);
    hash_workers_ = std::make_unique<detail::HashWorkers>(authenticator_, options_.auth_workers,
                                                          options_.auth_queue_limit);
    epoll_event done_event{};
    done_event.events = EPOLLIN;
    done_event.data.u64 = kHashDoneId;
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, hash_workers_->event_fd(), &done_event) != 0) {
      fail("cannot watch with epoll the hashing workers of");
    }
  }
  spare_fd_ = Fd(open("/dev/null", O_RDONLY | O_CLOEXEC));

  // The cap must fit the descriptor limit, or accept(2) fails with EMFILE
  // and new connections stall in the backlog.
  cap_ = std::max<size_t>(options_.max_connections, 1);
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    const size_t open_now = OpenDescriptorCount();
    const size_t soft = static_cast<size_t>(limit.rlim_cur);
    const size_t available = soft > open_now ? soft - open_now : 0;
    const size_t headroom = std::max(kFdHeadroom, open_now);
    const size_t fits = available > 2 * headroom ? available - headroom : available / 2;
    if (fits < cap_) {
      cap_ = std::max<size_t>(fits, 1);
      spdlog::warn(
          "HTTP server on {}: at most {} connections, fewer than max_connections {}: "
          "RLIMIT_NOFILE is {} with {} descriptors open (raise LimitNOFILE= or ulimit -n)",
          address.display, cap_, options_.max_connections, soft, open_now);
    } else {
      spdlog::info("HTTP server on {}: at most {} connections (RLIMIT_NOFILE {}, {} open)",
                   address.display, cap_, soft, open_now);
    }
  }
}

HttpServer::Impl::~Impl() { Stop(); }

void HttpServer::Impl::Start() {
  if (started_ || stopped_) return;
  started_ = true;
  if (hash_workers_) hash_workers_->Start();
  thread_ = std::thread([this] { Run(); });
}

void HttpServer::Impl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    uint64_t one = 1;
    if (write(wake_fd_.get(), &one, sizeof(one)) != sizeof(one)) {
      spdlog::error("HTTP server: cannot wake the server thread: {}", ErrnoText(errno));
    }
    thread_.join();
  }
  if (hash_workers_) hash_workers_->Stop();
  listen_fd_.Reset();
}

HttpServer::Stats HttpServer::Impl::stats() const {
  Stats stats;
  stats.connections_accepted = connections_accepted_.load(std::memory_order_relaxed);
  stats.connections_rejected = connections_rejected_.load(std::memory_order_relaxed);
  stats.requests = requests_.load(std::memory_order_relaxed);
  stats.auth_failures = auth_failures_.load(std::memory_order_relaxed);
  stats.timeouts = timeouts_.load(std::memory_order_relaxed);
  return stats;
}

void HttpServer::Impl::Run() {
  // SSL_write reaches write(2), which raises SIGPIPE on a reset peer; keep it
  // pending on this thread instead of killing the process.
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);

  std::array<epoll_event, 64> events{};
  bool stopping = false;
  // Blocking in epoll_wait costs a wake-up per request. A server that
  // was woken again soon after it blocked (a client asking back to back)
  // polls for a short while first; one that waited long blocks at once.
  Clock::duration last_block{Clock::duration::max()};
  while (!stopping) {
    int n = 0;
    if (last_block < kSpinAfterBlock) {
      const auto until = Clock::now() + kSpinFor;
      do {
        n = epoll_wait(epoll_fd_.get(), events.data(), static_cast<int>(events.size()), 0);
      } while (n == 0 && pending_.empty() && Clock::now() < until);
    }
    if (n == 0) {
      const auto blocked = Clock::now();
      n = epoll_wait(epoll_fd_.get(), events.data(), static_cast<int>(events.size()),
                     WaitTimeoutMs());
      last_block = Clock::now() - blocked;
    } else {
      last_block = Clock::duration::zero();
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("HTTP server: epoll_wait failed, no longer serving: {}", ErrnoText(errno));
      break;
    }
    for (int i = 0; i < n && !stopping; ++i) {
      uint64_t id = events[static_cast<size_t>(i)].data.u64;
      if (id == kWakeId) {
        stopping = true;
      } else if (id == kListenId) {
        AcceptAll();
      } else if (id == kHashDoneId) {
        TakeVerdicts();
      } else if (auto it = connections_.find(id); it != connections_.end()) {
        if (it->second->state != State::kAuthorizing) {
          Drive(*it->second);
        } else if (events[static_cast<size_t>(i)].events & (EPOLLHUP | EPOLLERR)) {
          Close(*it->second);  // gone while its credentials are checked
        }
      }
    }
    // Connections that yielded with a request already buffered.
    std::vector<uint64_t> ready;
    ready.swap(pending_);
    for (uint64_t id : ready) {
      if (stopping) break;
      if (auto it = connections_.find(id); it != connections_.end()) Drive(*it->second);
    }
    ExpireDeadlines();
    if (accept_paused_until_ && Clock::now() >= *accept_paused_until_) {
      accept_paused_until_.reset();
      epoll_event listen_event{};
      listen_event.events = EPOLLIN;
      listen_event.data.u64 = kListenId;
      epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, listen_fd_.get(), &listen_event);
    }
  }
  while (!connections_.empty()) Close(*connections_.begin()->second);
}

int HttpServer::Impl::WaitTimeoutMs() const {
  if (!pending_.empty()) return 0;
  std::optional<Clock::time_point> next;
  if (!deadlines_.empty()) next = deadlines_.begin()->first;
  if (accept_paused_until_ && (!next || *accept_paused_until_ < *next)) {
    next = accept_paused_until_;
  }
  if (!next) return -1;
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now()).count();
  return static_cast<int>(std::clamp<decltype(wait)>(wait, 0, INT_MAX));
}

void HttpServer::Impl::AcceptAll() {
  for (;;) {
    int fd = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN) return;
      // accept(2): errors of the new connection itself; try the next one.
      if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == ENETDOWN ||
          err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH ||
          err == EOPNOTSUPP || err == ENETUNREACH) {
        continue;
      }
      if (err == EMFILE || err == ENFILE) {
        // Out of descriptors below the cap (other parts of the process hold
        // more than foreseen): make room as at the cap, or else close the
        // new connection with the spare descriptor rather than let it stall.
        if (EvictOne()) continue;
        if (spare_fd_.get() >= 0) {
          spare_fd_.Reset();
          int excess = accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
          if (excess >= 0) {
            close(excess);
            connections_rejected_.fetch_add(1, std::memory_order_relaxed);
          }
          spare_fd_ = Fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
          if (excess >= 0 && spare_fd_.get() >= 0) continue;
        }
      }
      // Warn once per episode (EMFILE can last); the retries log at debug.
      spdlog::log(accept_failing_ ? spdlog::level::debug : spdlog::level::warn,
                  "HTTP server: accept failed, retrying every {} ms: {}", kAcceptPause.count(),
                  ErrnoText(err));
      accept_failing_ = true;
      epoll_event listen_event{};
      listen_event.data.u64 = kListenId;
      epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, listen_fd_.get(), &listen_event);
      accept_paused_until_ = Clock::now() + kAcceptPause;
      return;
    }
    Fd accepted(fd);
    accept_failing_ = false;
    if (connections_.size() >= cap_ && !EvictOne()) {
      connections_rejected_.fetch_add(1, std::memory_order_relaxed);
      continue;  // every connection is busy: `accepted` closes
    }
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    auto conn = std::make_unique<Connection>();
    conn->id = next_id_++;
    if (tls_ctx_) {
      ERR_clear_error();
      conn->ssl = SslPtr(SSL_new(tls_ctx_.get()));
      if (!conn->ssl || SSL_set_fd(conn->ssl.get(), fd) != 1) {
        spdlog::error("HTTP server: cannot set up TLS for a connection: {}", OpenSslErrors());
        continue;
      }
      SSL_set_accept_state(conn->ssl.get());
      conn->state = State::kHandshake;
    }
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = conn->id;
    if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
      spdlog::error("HTTP server: cannot register a connection with epoll: {}", ErrnoText(errno));
      continue;
    }
    conn->events = EPOLLIN;
    conn->fd = std::move(accepted);
    conn->since = Clock::now();
    if (hash_workers_) {
      sockaddr_storage peer{};
      socklen_t peer_length = sizeof(peer);
      if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) == 0) {
        conn->address = detail::ClientAddressKey(&peer);
      }
    }
    unserved_.insert(conn->id);
    connections_accepted_.fetch_add(1, std::memory_order_relaxed);
    Connection& ref = *conn;
    connections_.emplace(ref.id, std::move(conn));
    SetDeadline(ref, options_.request_timeout, true);
  }
}

// At the cap: closes the oldest connection that has not delivered a complete
// request head; failing that, the one that has lingered or waited for its
// next request longest. False when every connection is busy.
bool HttpServer::Impl::EvictOne() {
  Connection* victim = nullptr;
  if (!unserved_.empty()) {
    victim = connections_.at(*unserved_.begin()).get();
  } else {
    auto rank = [](const Connection& c) {
      return std::make_pair(c.state != State::kLingering, c.since);
    };
    for (auto& [id, conn] : connections_) {
      if (conn->state != State::kReading && conn->state != State::kLingering) continue;
      if (!victim || rank(*conn) < rank(*victim)) victim = conn.get();
    }
  }
  if (!victim) return false;
  connections_rejected_.fetch_add(1, std::memory_order_relaxed);
  Close(*victim);
  return true;
}

// Advances one connection as far as its socket allows. May close (and so
// destroy) `conn`: callers must not touch it afterwards.
void HttpServer::Impl::Drive(Connection& conn) {
  std::array<char, kReadChunk> buf;
  for (;;) {
    switch (conn.state) {
      case State::kHandshake: {
        ERR_clear_error();
        Io io = SslResult(conn, SSL_do_handshake(conn.ssl.get()));
        if (io == Io::kOk) {
          conn.state = State::kReading;
          conn.since = Clock::now();
          continue;
        }
        if (io == Io::kWantRead || io == Io::kWantWrite) {
          SetInterest(conn, io == Io::kWantRead ? EPOLLIN : EPOLLOUT);
          return;
        }
        spdlog::debug("HTTP server: TLS handshake failed: {}", OpenSslErrors());
        Close(conn);
        return;
      }
      case State::kReading: {
        if (!conn.in.empty() && ProcessRequest(conn)) continue;
        size_t got = 0;
        Io io = Read(conn, buf.data(), buf.size(), got);
        if (io == Io::kOk) {
          if (conn.idle) {  // the next request's first byte starts its clock
            conn.idle = false;
            SetDeadline(conn, options_.request_timeout, true);
          }
          conn.in.append(buf.data(), got);
          continue;
        }
        if (io == Io::kWantRead || io == Io::kWantWrite) {
          SetInterest(conn, io == Io::kWantRead ? EPOLLIN : EPOLLOUT);
          return;
        }
        Close(conn);
        return;
      }
      case State::kAuthorizing:
        return;  // TakeVerdicts resumes it
      case State::kWriting: {
        bool progress = false;
        const auto remaining = [&conn] {
          return conn.out.size() - conn.out_offset +
                 (conn.out_body ? conn.out_body->size() - conn.body_offset : 0);
        };
        while (remaining() > 0) {
          // The head first, then the shared body: in one sendmsg where the
          // connection is plain, so that the client gets one segment and
          // wakes once (TCP_NODELAY sends a head alone at once).
          size_t sent = 0;
          Io io = WriteResponse(conn, sent);
          if (io == Io::kOk) {
            const size_t head = std::min(sent, conn.out.size() - conn.out_offset);
            conn.out_offset += head;
            conn.body_offset += sent - head;
            progress = true;
            continue;
          }
          if (io == Io::kWantRead || io == Io::kWantWrite) {
            if (progress) SetDeadline(conn, options_.request_timeout, true);
            SetInterest(conn, io == Io::kWantRead ? EPOLLIN : EPOLLOUT);
            return;
          }
          Close(conn);
          return;
        }
        std::string().swap(conn.out);
        conn.out_offset = 0;
        conn.out_body.reset();
        conn.body_offset = 0;
        if (conn.close_after_write) {
          StartLinger(conn);
          continue;
        }
        conn.state = State::kReading;
        conn.since = Clock::now();
        conn.idle = conn.in.empty();
        if (conn.idle) {
          SetDeadline(conn, options_.idle_timeout, false);
        } else {
          SetDeadline(conn, options_.request_timeout, true);
        }
        // Fairness: one response per turn. A keep-alive client on loopback
        // has its next request waiting already; serving it at once would let
        // one connection hold the server while the others wait (figures in
        // bench/results). Bytes in the socket re-arm epoll (level
        // triggered); bytes already taken into our buffer or OpenSSL's are
        // served after this epoll round.
        if (!conn.in.empty() || (conn.ssl && SSL_pending(conn.ssl.get()) > 0)) {
          pending_.push_back(conn.id);
        }
        SetInterest(conn, EPOLLIN);
        return;
      }
      case State::kLingering: {
        for (;;) {
          ssize_t n = recv(conn.fd.get(), buf.data(), buf.size(), 0);
          if (n > 0) {
            conn.lingered_bytes += static_cast<size_t>(n);
            if (conn.lingered_bytes <= kLingerMaxBytes) continue;
          } else if (n < 0 && errno == EINTR) {
            continue;
          } else if (n < 0 && errno == EAGAIN) {
            SetInterest(conn, EPOLLIN);
            return;
          }
          Close(conn);
          return;
        }
      }
    }
  }
}

// Parses the buffered input; returns false when a request is still
// incomplete, true once a response has been queued.
bool HttpServer::Impl::ProcessRequest(Connection& conn) {
  detail::ParseResult parsed = detail::ParseRequest(conn.in, options_.max_request_bytes);
  if (parsed.status == detail::ParseStatus::kIncomplete) return false;
  requests_.fetch_add(1, std::memory_order_relaxed);
  if (!conn.head_complete) {
    conn.head_complete = true;
    unserved_.erase(conn.id);  // no longer the first to make room at the cap
  }
  if (parsed.status == detail::ParseStatus::kError) {
    HttpResponse response = PlainResponse(
        parsed.error_status, std::string(detail::StatusReason(parsed.error_status)) + "\n");
    if (parsed.error_status == 405) response.headers.emplace_back("Allow", "GET, HEAD");
    bool keep_alive = !parsed.error_closes && parsed.keep_alive;
    if (parsed.error_closes) {
      conn.in.clear();
    } else {
      conn.in.erase(0, parsed.consumed);
    }
    QueueResponse(conn, response, false, false, keep_alive, parsed.http10);
    return true;
  }
  conn.in.erase(0, parsed.consumed);
  conn.request = std::move(parsed);
  if (authenticator_) {
    Authorize(conn);
  } else {
    Answer(conn, Respond(conn.request.request));
  }
  return true;
}

void HttpServer::Impl::Answer(Connection& conn, const HttpResponse& response) {
  const detail::ParseResult& request = conn.request;
  QueueResponse(conn, response, request.request.method == "HEAD", request.accepts_gzip,
                request.keep_alive, request.http10);
}

HttpResponse HttpServer::Impl::Respond(const HttpRequest& request) {
  try {
    return handler_(request);
  } catch (const std::exception& e) {
    spdlog::error("HTTP server: handler failed for {}: {}", request.path, e.what());
  } catch (...) {
    spdlog::error("HTTP server: handler failed for {}", request.path);
  }
  return PlainResponse(500, "Internal Server Error\n");
}

// Answers conn.request at once when the limiter or the cache decides it;
// otherwise hands the credentials to a worker and leaves the connection in
// kAuthorizing until TakeVerdicts.
void HttpServer::Impl::Authorize(Connection& conn) {
  const auto now = Clock::now();
  auto refuse = [&](HttpResponse response) {
    auth_failures_.fetch_add(1, std::memory_order_relaxed);
    Answer(conn, response);
  };
  if (auto wait = auth_limiter_->RetryAfter(conn.address, now); wait.count() > 0) {
    refuse(RetryLater(429, wait));
    return;
  }
  const std::string* value = nullptr;
  for (const auto& [name, header_value] : conn.request.request.headers) {
    if (name != "authorization") continue;
    if (value) {  // two credentials: refuse rather than pick one
      refuse(Unauthorized());
      return;
    }
    value = &header_value;
  }
  std::optional<detail::BasicCredentials> credentials;
  if (value) credentials = detail::ParseBasicAuthorization(*value);
  if (!credentials) {
    refuse(Unauthorized());
    return;
  }
  const detail::CredentialCache::Key key =
      auth_cache_->KeyFor(credentials->user, credentials->password);
  if (const bool* ok = auth_cache_->Find(key)) {
    if (*ok) {
      Answer(conn, Respond(conn.request.request));
    } else {
      auth_limiter_->Fail(conn.address, now);
      refuse(Unauthorized());
    }
    return;
  }
  detail::HashWorkers::Job job{conn.id, conn.address, key, std::move(credentials->user),
                               std::move(credentials->password)};
  if (!hash_workers_->Submit(std::move(job))) {
    refuse(RetryLater(503, std::chrono::seconds(1)));
    return;
  }
  auth_limiter_->Begin(conn.address, now);
  conn.state = State::kAuthorizing;
  SetInterest(conn, 0);
}

// Verdicts from the workers: cached, counted, and the waiting connections
// answered (a connection closed meanwhile is simply gone).
void HttpServer::Impl::TakeVerdicts() {
  const auto now = Clock::now();
  for (detail::HashWorkers::Done& done : hash_workers_->TakeDone()) {
    auth_cache_->Put(done.key, done.ok);
    auth_limiter_->End(done.address, done.ok, now);
    auto it = connections_.find(done.connection);
    if (it == connections_.end() || it->second->state != State::kAuthorizing) continue;
    Connection& conn = *it->second;
    if (done.ok) {
      Answer(conn, Respond(conn.request.request));
    } else {
      auth_failures_.fetch_add(1, std::memory_order_relaxed);
      Answer(conn, Unauthorized());
    }
    Drive(conn);
  }
}

void HttpServer::Impl::QueueResponse(Connection& conn, const HttpResponse& response, bool head,
                                     bool gzip, bool keep_alive, bool http10) {
  // A shared body (and its shared compressed copy) is written from where it
  // is, never copied.
  std::shared_ptr<const std::string> shared = response.shared_body;
  const std::string* body = shared ? shared.get() : &response.body;
  std::optional<std::string> compressed;
  bool gzipped = false;
  bool may_compress = body->size() > kGzipMinBytes;
  if (gzip && may_compress && shared && response.gzip_body) {
    if (auto zipped = response.gzip_body()) {
      shared = std::move(zipped);
      body = shared.get();
      gzipped = true;
    }
  } else if (gzip && may_compress) {
    compressed = GzipCompress(*body);
    if (compressed) body = &*compressed;
    gzipped = compressed.has_value();
  }
  std::string& out = conn.out;
  out.clear();
  out.reserve(256 + (head || shared ? 0 : body->size()));
  out += "HTTP/1.1 " + std::to_string(response.status) + " " +
         detail::StatusReason(response.status) + "\r\n";
  out += "Date: " + HttpDate() + "\r\n";
  if (!response.content_type.empty()) out += "Content-Type: " + response.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(body->size()) + "\r\n";
  if (gzipped) out += "Content-Encoding: gzip\r\n";
  if (may_compress) out += "Vary: Accept-Encoding\r\n";
  for (const auto& [name, value] : response.headers) {
    // The server owns framing; CR/LF would split the response.
    if (IsFramingHeader(name) || name.find_first_of("\r\n:") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos) {
      continue;
    }
    out += name + ": " + value + "\r\n";
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  conn.out_body.reset();
  conn.body_offset = 0;
  if (!head && shared) {
    conn.out_body = std::move(shared);
  } else if (!head) {
    out += *body;
  }
  conn.out_offset = 0;
  conn.close_after_write = !keep_alive;
  conn.state = State::kWriting;
  SetDeadline(conn, options_.request_timeout, true);
}

void HttpServer::Impl::StartLinger(Connection& conn) {
  if (conn.ssl) {
    ERR_clear_error();
    SSL_shutdown(conn.ssl.get());  // best effort close_notify
    ERR_clear_error();
  }
  shutdown(conn.fd.get(), SHUT_WR);
  conn.state = State::kLingering;
  conn.since = Clock::now();
  conn.in.clear();
  conn.lingered_bytes = 0;
  SetDeadline(conn, std::min<Clock::duration>(kLingerTime, options_.request_timeout), false);
}

HttpServer::Impl::Io HttpServer::Impl::SslResult(Connection& conn, int rc) {
  if (rc > 0) return Io::kOk;
  switch (SSL_get_error(conn.ssl.get(), rc)) {
    case SSL_ERROR_WANT_READ:
      return Io::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Io::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      return Io::kEof;
    default:
      return Io::kError;
  }
}

HttpServer::Impl::Io HttpServer::Impl::Read(Connection& conn, char* buf, size_t size,
                                            size_t& done) {
  if (conn.ssl) {
    ERR_clear_error();
    Io io = SslResult(conn, SSL_read_ex(conn.ssl.get(), buf, size, &done));
    if (io == Io::kError) ERR_clear_error();
    return io;
  }
  for (;;) {
    ssize_t n = recv(conn.fd.get(), buf, size, 0);
    if (n > 0) {
      done = static_cast<size_t>(n);
      return Io::kOk;
    }
    if (n == 0) return Io::kEof;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? Io::kWantRead : Io::kError;
  }
}

HttpServer::Impl::Io HttpServer::Impl::Write(Connection& conn, const char* buf, size_t size,
                                             size_t& done) {
  if (conn.ssl) {
    ERR_clear_error();
    Io io = SslResult(conn, SSL_write_ex(conn.ssl.get(), buf, size, &done));
    if (io == Io::kError || io == Io::kEof) ERR_clear_error();
    return io == Io::kEof ? Io::kError : io;
  }
  iovec part{const_cast<char*>(buf), size};
  return SendPlain(conn, &part, 1, done);
}

HttpServer::Impl::Io HttpServer::Impl::SendPlain(Connection& conn, iovec* parts, size_t count,
                                                 size_t& done) {
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = count;
  for (;;) {
    ssize_t n = sendmsg(conn.fd.get(), &message, MSG_NOSIGNAL);
    if (n >= 0) {
      done = static_cast<size_t>(n);
      return Io::kOk;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN ? Io::kWantWrite : Io::kError;
  }
}

HttpServer::Impl::Io HttpServer::Impl::WriteResponse(Connection& conn, size_t& done) {
  const std::string_view head =
      std::string_view(conn.out).substr(std::min(conn.out_offset, conn.out.size()));
  const std::string_view body = conn.out_body
                                    ? std::string_view(*conn.out_body).substr(conn.body_offset)
                                    : std::string_view();
  if (conn.ssl || head.empty() || body.empty()) {
    const std::string_view part = head.empty() ? body : head;
    return Write(conn, part.data(), part.size(), done);
  }
  iovec parts[2] = {{const_cast<char*>(head.data()), head.size()},
                    {const_cast<char*>(body.data()), body.size()}};
  return SendPlain(conn, parts, 2, done);
}

void HttpServer::Impl::SetInterest(Connection& conn, uint32_t events) {
  if (conn.events == events) return;
  epoll_event event{};
  event.events = events;
  event.data.u64 = conn.id;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, conn.fd.get(), &event) == 0) conn.events = events;
}

void HttpServer::Impl::SetDeadline(Connection& conn, Clock::duration after, bool is_timeout) {
  deadlines_.erase({conn.deadline, conn.id});
  conn.deadline = Clock::now() + after;
  conn.deadline_is_timeout = is_timeout;
  deadlines_.emplace(conn.deadline, conn.id);
}

void HttpServer::Impl::ExpireDeadlines() {
  auto now = Clock::now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    uint64_t id = deadlines_.begin()->second;
    auto it = connections_.find(id);
    if (it == connections_.end()) {
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    if (it->second->deadline_is_timeout) timeouts_.fetch_add(1, std::memory_order_relaxed);
    Close(*it->second);
  }
}

void HttpServer::Impl::Close(Connection& conn) {
  deadlines_.erase({conn.deadline, conn.id});
  // Closing the fd removes it from epoll; the SSL object goes first as it
  // refers to the fd.
  uint64_t id = conn.id;
  unserved_.erase(id);
  conn.ssl.reset();
  connections_.erase(id);
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler, Authenticator authenticator)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler),
                                   std::move(authenticator))) {}
HttpServer::~HttpServer() = default;
void HttpServer::Start() { impl_->Start(); }
void HttpServer::Stop() { impl_->Stop(); }
int HttpServer::port() const { return impl_->port(); }
bool HttpServer::tls() const { return impl_->tls(); }
HttpServer::Stats HttpServer::stats() const { return impl_->stats(); }
size_t HttpServer::max_connections() const { return impl_->max_connections(); }

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace pmu::web
