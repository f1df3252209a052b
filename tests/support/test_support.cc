#include "test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace pmu::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> Environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  for (const auto& x : extra) env.push_back(x);
  return env;
}

pid_t Spawn(std::vector<std::string> argv, const std::vector<std::string>& extra_env,
            const std::string& in_path, const std::string& out_path, const std::string& err_path) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  auto env = Environment(extra_env);
  auto cargv = CStrings(argv);
  auto cenv = CStrings(env);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, cargv[0], &fa, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/pmu-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(const std::string& name, const std::string& content) const {
  std::string p = path_ + "/" + name;
  std::ofstream(p) << content;
  return p;
}

Child::Child(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env) {
  pid_ = Spawn(argv, extra_env, "/dev/null", dir_.path() + "/stdout", dir_.path() + "/stderr");
}

Child::~Child() {
  if (!status_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    int st;
    waitpid(pid_, &st, 0);
  }
}

bool Child::Running() { return !Wait(std::chrono::milliseconds(0)).has_value(); }

std::optional<int> Child::Wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = DecodeStatus(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::optional<int> Child::Signal(int sig, std::chrono::milliseconds timeout) {
  if (!status_) kill(pid_, sig);
  return Wait(timeout);
}

std::string Child::Stdout() const { return ReadAll(dir_.path() + "/stdout"); }
std::string Child::Stderr() const { return ReadAll(dir_.path() + "/stderr"); }

RunResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_data,
                     const std::vector<std::string>& extra_env) {
  TempDir dir;
  const std::string in = dir.Write("stdin", stdin_data);
  pid_t pid = Spawn(argv, extra_env, in, dir.path() + "/stdout", dir.path() + "/stderr");
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return {DecodeStatus(st), ReadAll(dir.path() + "/stdout"), ReadAll(dir.path() + "/stderr")};
}

HttpResponse HttpGet(const std::string& host, int port, const std::string& path,
                     std::chrono::milliseconds timeout) {
  HttpResponse resp;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return resp;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return resp;
  }
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host +
                          "\r\nConnection: close\r\nAccept-Encoding: identity\r\n\r\n";
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return resp;
  }
  std::string raw;
  char buf[16384];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  auto header_end = raw.find("\r\n\r\n");
  if (header_end == std::string::npos || raw.compare(0, 5, "HTTP/") != 0) return resp;
  std::istringstream head(raw.substr(0, header_end));
  std::string line, version;
  std::getline(head, line);
  std::istringstream(line) >> version >> resp.status;
  while (std::getline(head, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    if (!value.empty() && value.back() == '\r') value.pop_back();
    resp.headers[name] = value;
  }
  resp.body = raw.substr(header_end + 4);
  if (resp.headers["transfer-encoding"] == "chunked") {
    std::string decoded;
    size_t pos = 0;
    while (pos < resp.body.size()) {
      size_t eol = resp.body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t len = std::stoul(resp.body.substr(pos, eol - pos), nullptr, 16);
      if (len == 0) break;
      decoded.append(resp.body, eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    resp.body = decoded;
  }
  return resp;
}

std::optional<int> WaitForPortFile(const std::string& path, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {  // at least one look, even with a zero timeout
    std::ifstream in(path);
    int port = 0;
    if (in >> port && port > 0) return port;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::vector<Series> ParseExposition(const std::string& text) {
  std::vector<Series> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    Series s;
    size_t pos = line.find_first_of("{ ");
    s.name = line.substr(0, pos);
    if (pos != std::string::npos && line[pos] == '{') {
      size_t end = line.find('}', pos);
      std::string labels = line.substr(pos + 1, end - pos - 1);
      size_t p = 0;
      while (p < labels.size()) {
        size_t eq = labels.find('=', p);
        size_t q1 = labels.find('"', eq);
        size_t q2 = q1 + 1;
        std::string value;
        while (q2 < labels.size() && labels[q2] != '"') {
          if (labels[q2] == '\\' && q2 + 1 < labels.size()) ++q2;
          value += labels[q2++];
        }
        s.labels[labels.substr(p, eq - p)] = value;
        p = labels.find(',', q2);
        p = (p == std::string::npos) ? labels.size() : p + 1;
      }
      pos = end + 1;
    }
    s.value = std::strtod(line.c_str() + pos, nullptr);
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<Series> Select(const std::vector<Series>& all, const std::string& name,
                           const std::map<std::string, std::string>& labels) {
  std::vector<Series> out;
  for (const auto& s : all) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) match = false;
    }
    if (match) out.push_back(s);
  }
  return out;
}

std::vector<int> OnlineCpus() {
  std::ifstream in("/sys/devices/system/cpu/online");
  std::string text;
  std::getline(in, text);
  std::vector<int> cpus;
  std::istringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) {
    auto dash = part.find('-');
    int lo = std::stoi(part.substr(0, dash));
    int hi = dash == std::string::npos ? lo : std::stoi(part.substr(dash + 1));
    for (int c = lo; c <= hi; ++c) cpus.push_back(c);
  }
  return cpus;
}

bool HaveTool(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (access((dir + "/" + tool).c_str(), X_OK) == 0) return true;
  }
  return false;
}

ScopedPin::ScopedPin(int cpu) {
  sched_getaffinity(0, sizeof(old_), &old_);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(static_cast<size_t>(cpu), &one);
  pinned_ = sched_setaffinity(0, sizeof(one), &one) == 0;
}

ScopedPin::~ScopedPin() { sched_setaffinity(0, sizeof(old_), &old_); }

bool MakeTestPki(const TempDir& dir, TestPki* pki, std::string* why) {
  if (!HaveTool("openssl")) {
    *why = "the openssl command is missing";
    return false;
  }
  const std::string d = dir.path() + "/";
  const std::string ext =
      dir.Write("server.ext",
                "subjectAltName=IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n");
  const std::vector<std::string> ec = {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"};
  auto genkey = [&](const std::string& out) {
    std::vector<std::string> cmd = {"openssl", "genpkey"};
    cmd.insert(cmd.end(), ec.begin(), ec.end());
    cmd.insert(cmd.end(), {"-out", out});
    return cmd;
  };
  const std::vector<std::vector<std::string>> steps = {
      genkey(d + "ca.key"),
      {"openssl", "req", "-x509", "-new", "-key", d + "ca.key", "-sha256", "-days", "2", "-subj",
       "/CN=pmu-exporter test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
       "keyUsage=critical,keyCertSign,cRLSign", "-out", d + "ca.pem"},
      genkey(d + "server.key"),
      {"openssl", "req", "-new", "-key", d + "server.key", "-subj", "/CN=127.0.0.1", "-out",
       d + "server.csr"},
      {"openssl", "x509", "-req", "-in", d + "server.csr", "-CA", d + "ca.pem", "-CAkey",
       d + "ca.key", "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext, "-out",
       d + "server.pem"},
      genkey(d + "other.key"),
  };
  for (const auto& step : steps) {
    RunResult r = RunCommand(step);
    if (r.status != 0) {
      *why = "openssl " + step[1] + " failed: " + r.err;
      return false;
    }
  }
  *pki = {d + "ca.pem", d + "server.pem", d + "server.key", d + "other.key"};
  return true;
}

std::string DaemonBinary() { return PMU_DAEMON_BINARY; }
std::string SourcePath(const std::string& relative) {
  return std::string(PMU_SOURCE_DIR) + "/" + relative;
}

bool UserRdpmcWorks() {
#if defined(__x86_64__)
  const pid_t child = fork();
  if (child < 0) return false;
  if (child == 0) {
    unsigned lo = 0;
    unsigned hi = 0;
    asm volatile("rdpmc" : "=a"(lo), "=d"(hi) : "c"(0));
    _exit(0);
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
#else
  return false;
#endif
}

}  // namespace pmu::testing
