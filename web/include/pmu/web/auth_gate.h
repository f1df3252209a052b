// The pieces HttpServer puts in front of basic authentication so that a
// flood of wrong passwords cannot starve the serving thread:
//  - CredentialCache: recent verdicts (success and failure) per credential,
//    keyed by a keyed hash of user and password, never the password itself;
//  - FailureLimiter: failed attempts per client address, answered with 429;
//  - HashWorkers: a small pool of threads that runs the (slow) authenticator
//    off the event loop and hands verdicts back through an eventfd.
//
// Thread safety: CredentialCache and FailureLimiter are used by the server
// thread only. HashWorkers::Submit and TakeDone are called by the server
// thread; the authenticator runs on the pool's threads.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace pmu::web::detail {

using AuthClock = std::chrono::steady_clock;

// A bounded least-recently-used map from credential to verdict. The key is
// HMAC-SHA-256 of user and password under a random per-cache secret, so the
// cache neither holds passwords nor answers faster for a known user name.
class CredentialCache {
 public:
  using Key = std::array<unsigned char, 32>;

  explicit CredentialCache(size_t capacity);

  Key KeyFor(std::string_view user, std::string_view password) const;
  // The cached verdict, if any (and marks it recently used).
  const bool* Find(const Key& key);
  void Put(const Key& key, bool ok);
  size_t size() const { return index_.size(); }

 private:
  struct KeyHash {
    size_t operator()(const Key& key) const;
  };
  using Entry = std::pair<Key, bool>;

  size_t capacity_;
  std::array<unsigned char, 32> secret_{};
  std::list<Entry> order_;  // most recent first
  std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index_;
};

// Counts failed attempts per client address (an IPv4 address, or an IPv6
// /64 — one host usually owns a whole /64). Once an address has
// `max_failures` failures (attempts still being verified included) within
// `window` of its first, it must wait for the window to end. Remembers at
// most `max_addresses` addresses; beyond that the one whose window started
// first is forgotten.
class FailureLimiter {
 public:
  FailureLimiter(size_t max_failures, std::chrono::seconds window, size_t max_addresses);

  // How long `address` must wait before its next attempt; zero when it may
  // try now.
  std::chrono::seconds RetryAfter(const std::string& address, AuthClock::time_point now);
  // An attempt whose verdict is not known yet (being hashed).
  void Begin(const std::string& address, AuthClock::time_point now);
  // The verdict of an attempt passed to Begin. A success clears the count.
  void End(const std::string& address, bool ok, AuthClock::time_point now);
  // A failure whose verdict was known at once (cached).
  void Fail(const std::string& address, AuthClock::time_point now);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    size_t failures = 0;
    size_t in_flight = 0;
    AuthClock::time_point window_start;
  };
  Entry& Track(const std::string& address, AuthClock::time_point now);
  void Forget(std::unordered_map<std::string, Entry>::iterator it);

  size_t max_failures_;
  std::chrono::seconds window_;
  size_t max_addresses_;
  std::unordered_map<std::string, Entry> entries_;
};

// The limiter's key for a peer address: the IPv4 address, or the first 8
// bytes of an IPv6 one (IPv4-mapped IPv6 counts as IPv4).
std::string ClientAddressKey(const void* sockaddr_storage_ptr);

// Runs `verify(user, password)` on `threads` threads. Submit refuses a job
// (returns false) when `max_queued` are already waiting. Each verdict is
// queued for TakeDone and announced by making event_fd() readable.
class HashWorkers {
 public:
  using Verify = std::function<bool(const std::string& user, const std::string& password)>;
  struct Job {
    uint64_t connection = 0;
    std::string address;
    CredentialCache::Key key{};
    std::string user;
    std::string password;
  };
  struct Done {
    uint64_t connection = 0;
    std::string address;
    CredentialCache::Key key{};
    bool ok = false;
  };

  // Throws std::runtime_error when the eventfd cannot be made.
  HashWorkers(Verify verify, size_t threads, size_t max_queued);
  ~HashWorkers();  // Stop()
  HashWorkers(const HashWorkers&) = delete;
  HashWorkers& operator=(const HashWorkers&) = delete;

  void Start();  // starts the threads
  void Stop();   // drops queued jobs, waits for running ones
  bool Submit(Job job);
  std::vector<Done> TakeDone();  // and clears event_fd()
  int event_fd() const { return event_fd_; }

 private:
  void Run();

  const Verify verify_;
  const size_t thread_count_;
  const size_t max_queued_;
  int event_fd_ = -1;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  std::vector<Done> done_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace pmu::web::detail
