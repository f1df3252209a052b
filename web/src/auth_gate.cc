#include "pmu/web/auth_gate.h"

#include <netinet/in.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace pmu::web::detail {

CredentialCache::CredentialCache(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {
  if (RAND_bytes(secret_.data(), static_cast<int>(secret_.size())) != 1) {
    throw std::runtime_error("cannot draw a random key for the credential cache");
  }
}

size_t CredentialCache::KeyHash::operator()(const Key& key) const {
  size_t h = 0;
  std::memcpy(&h, key.data(), sizeof(h));  // already uniformly random
  return h;
}

CredentialCache::Key CredentialCache::KeyFor(std::string_view user,
                                             std::string_view password) const {
  // user and password separated by a NUL, which neither may contain.
  std::string message;
  message.reserve(user.size() + 1 + password.size());
  message.append(user).push_back('\0');
  message.append(password);
  Key key{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), key.data(), &length);
  std::fill(message.begin(), message.end(), '\0');
  return key;
}

const bool* CredentialCache::Find(const Key& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  order_.splice(order_.begin(), order_, it->second);
  return &it->second->second;
}

void CredentialCache::Put(const Key& key, bool ok) {
  if (auto it = index_.find(key); it != index_.end()) {
    it->second->second = ok;
    order_.splice(order_.begin(), order_, it->second);
    return;
  }
  order_.emplace_front(key, ok);
  index_.emplace(key, order_.begin());
  if (index_.size() > capacity_) {
    index_.erase(order_.back().first);
    order_.pop_back();
  }
}

FailureLimiter::FailureLimiter(size_t max_failures, std::chrono::seconds window,
                               size_t max_addresses)
    : max_failures_(std::max<size_t>(max_failures, 1)),
      window_(std::max(window, std::chrono::seconds(1))),
      max_addresses_(std::max<size_t>(max_addresses, 1)) {}

std::chrono::seconds FailureLimiter::RetryAfter(const std::string& address,
                                                AuthClock::time_point now) {
  auto it = entries_.find(address);
  if (it == entries_.end()) return std::chrono::seconds(0);
  Entry& entry = it->second;
  if (now >= entry.window_start + window_) {
    entry.failures = 0;
    if (entry.in_flight == 0) {
      entries_.erase(it);
      return std::chrono::seconds(0);
    }
    entry.window_start = now;
  }
  if (entry.failures + entry.in_flight < max_failures_) return std::chrono::seconds(0);
  auto left = std::chrono::ceil<std::chrono::seconds>(entry.window_start + window_ - now);
  return std::max(left, std::chrono::seconds(1));
}

FailureLimiter::Entry& FailureLimiter::Track(const std::string& address,
                                             AuthClock::time_point now) {
  auto it = entries_.find(address);
  if (it != entries_.end()) return it->second;
  if (entries_.size() >= max_addresses_) {
    std::erase_if(entries_, [&](const auto& item) {
      return item.second.in_flight == 0 && now >= item.second.window_start + window_;
    });
  }
  if (entries_.size() >= max_addresses_) {
    auto oldest = std::min_element(
        entries_.begin(), entries_.end(),
        [](const auto& a, const auto& b) { return a.second.window_start < b.second.window_start; });
    entries_.erase(oldest);
  }
  Entry& entry = entries_[address];
  entry.window_start = now;
  return entry;
}

void FailureLimiter::Begin(const std::string& address, AuthClock::time_point now) {
  ++Track(address, now).in_flight;
}

void FailureLimiter::End(const std::string& address, bool ok, AuthClock::time_point now) {
  auto it = entries_.find(address);
  if (it == entries_.end()) {  // forgotten meanwhile
    if (!ok) Fail(address, now);
    return;
  }
  Entry& entry = it->second;
  if (entry.in_flight > 0) --entry.in_flight;
  if (ok) {
    entry.failures = 0;
  } else {
    ++entry.failures;
  }
  if (entry.failures == 0 && entry.in_flight == 0) entries_.erase(it);
}

void FailureLimiter::Fail(const std::string& address, AuthClock::time_point now) {
  ++Track(address, now).failures;
}

std::string ClientAddressKey(const void* sockaddr_storage_ptr) {
  const auto* storage = static_cast<const sockaddr_storage*>(sockaddr_storage_ptr);
  if (storage->ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(storage);
    return std::string(reinterpret_cast<const char*>(&sin->sin_addr), 4);
  }
  if (storage->ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(storage);
    const auto* bytes = reinterpret_cast<const char*>(&sin6->sin6_addr);
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) return std::string(bytes + 12, 4);
    return std::string(bytes, 8);  // the /64
  }
  return {};
}

HashWorkers::HashWorkers(Verify verify, size_t threads, size_t max_queued)
    : verify_(std::move(verify)),
      thread_count_(std::max<size_t>(threads, 1)),
      max_queued_(std::max<size_t>(max_queued, 1)) {
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) {
    throw std::runtime_error("cannot create an eventfd for password hashing: " +
                             std::generic_category().message(errno));
  }
}

HashWorkers::~HashWorkers() {
  Stop();
  close(event_fd_);
}

void HashWorkers::Start() {
  std::lock_guard lock(mutex_);
  if (!threads_.empty() || stopping_) return;
  for (size_t i = 0; i < thread_count_; ++i) threads_.emplace_back([this] { Run(); });
}

void HashWorkers::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    queue_.clear();
  }
  wake_.notify_all();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
}

bool HashWorkers::Submit(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= max_queued_) return false;
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
  return true;
}

std::vector<HashWorkers::Done> HashWorkers::TakeDone() {
  uint64_t count = 0;
  if (read(event_fd_, &count, sizeof(count)) < 0 && errno != EAGAIN) {
    spdlog::debug("HTTP server: reading the hashing eventfd: {}",
                  std::generic_category().message(errno));
  }
  std::lock_guard lock(mutex_);
  return std::exchange(done_, {});
}

void HashWorkers::Run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    bool ok = false;
    try {
      ok = verify_(job.user, job.password);
    } catch (const std::exception& e) {
      spdlog::error("HTTP server: authenticator failed: {}", e.what());
    }
    std::fill(job.password.begin(), job.password.end(), '\0');
    {
      std::lock_guard lock(mutex_);
      done_.push_back(Done{job.connection, std::move(job.address), job.key, ok});
    }
    uint64_t one = 1;
    if (write(event_fd_, &one, sizeof(one)) != sizeof(one)) {
      spdlog::error("HTTP server: cannot wake the server thread after hashing: {}",
                    std::generic_category().message(errno));
    }
  }
}

}  // namespace pmu::web::detail
