// Helpers shared by the integration tests: temporary directories, child
// processes, a minimal HTTP/1.1 GET over a real TCP socket, and a parser for
// the Prometheus text exposition format.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace pmu::testing {

// A directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

// A child process with stdout and stderr captured to files.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {});
  ~Child();  // SIGKILLs a child still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool Running();
  // Sends `sig` and waits up to `timeout`; returns the exit status or
  // nullopt on timeout. A death by signal is returned as 128 + signal.
  std::optional<int> Signal(int sig, std::chrono::milliseconds timeout);
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  std::string Stdout() const;
  std::string Stderr() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  TempDir dir_;
};

// Runs a command to completion; returns exit status, stdout, stderr.
struct RunResult {
  int status = -1;
  std::string out;
  std::string err;
};
RunResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_data = "",
                     const std::vector<std::string>& extra_env = {});

struct HttpResponse {
  int status = 0;  // 0 = no response
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};
HttpResponse HttpGet(const std::string& host, int port, const std::string& path,
                     std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Waits until `path` exists and holds a port number.
std::optional<int> WaitForPortFile(const std::string& path, std::chrono::milliseconds timeout);

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();

// One parsed sample line of the text format.
struct Series {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};
std::vector<Series> ParseExposition(const std::string& text);
std::vector<Series> Select(const std::vector<Series>& all, const std::string& name,
                           const std::map<std::string, std::string>& labels = {});

std::vector<int> OnlineCpus();

// A throw-away PKI made with the openssl CLI in `dir`: a CA (ca.pem) and a
// server certificate for IP 127.0.0.1 and ::1 signed by it (server.pem,
// server.key), plus a second key that does not match (other.key). EC P-256.
// Returns false (with the reason in *why) when openssl is missing or fails.
struct TestPki {
  std::string ca, cert, key, other_key;
};
bool MakeTestPki(const TempDir& dir, TestPki* pki, std::string* why);

// True when `tool` is an executable on PATH.
bool HaveTool(const std::string& tool);

// Pins the calling thread to one CPU for the object's life and restores its
// affinity afterwards. pinned() is false when the CPU is not available.
class ScopedPin {
 public:
  explicit ScopedPin(int cpu);
  ~ScopedPin();
  ScopedPin(const ScopedPin&) = delete;
  ScopedPin& operator=(const ScopedPin&) = delete;
  bool pinned() const { return pinned_; }

 private:
  cpu_set_t old_;
  bool pinned_ = false;
};

// True when user-space rdpmc runs without faulting on this host (tried in a
// child process; x86-64 only, false elsewhere).
bool UserRdpmcWorks();

// Absolute path of a built binary or a source file, from compile definitions.
std::string DaemonBinary();
std::string SourcePath(const std::string& relative);

}  // namespace pmu::testing
