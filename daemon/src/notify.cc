#include "pmu/daemon/notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace pmu::daemon {

Notifier::Notifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
  uint64_t usec = 0;
  // Checks WATCHDOG_PID too, when set, so a child does not feed our watchdog.
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    // Bounded like every configured duration, so watchdog/4 heartbeats and
    // the main loop's timeouts cannot overflow (WATCHDOG_USEC is a uint64).
    constexpr uint64_t kMaxUsec = 24ull * 3600 * 1000 * 1000;
    watchdog_ = std::chrono::microseconds(static_cast<int64_t>(std::min(usec, kMaxUsec)));
  }
}

void Notifier::Send(const std::string& message) const {
  if (!enabled_) return;
  int rc = sd_notify(0, message.c_str());
  if (rc < 0) spdlog::debug("sd_notify({}) failed: {}", message, std::strerror(-rc));
}

void Notifier::Ready(const std::string& status) const { Send("READY=1\nSTATUS=" + status); }

void Notifier::Reloading() const {
  // MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload.
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const long long usec = static_cast<long long>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
  Send("RELOADING=1\nSTATUS=reloading configuration\nMONOTONIC_USEC=" + std::to_string(usec));
}

void Notifier::Stopping() const { Send("STOPPING=1\nSTATUS=stopping"); }
void Notifier::Status(const std::string& status) const { Send("STATUS=" + status); }
void Notifier::Watchdog() const { Send("WATCHDOG=1"); }

}  // namespace pmu::daemon
