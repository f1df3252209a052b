// systemd service notification (sd_notify(3)): READY, RELOADING, STOPPING,
// STATUS and the watchdog. Every call is a no-op when NOTIFY_SOCKET is unset,
// so the daemon behaves the same outside systemd.
//
// Thread safety: all members may be called from any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace pmu::daemon {

class Notifier {
 public:
  Notifier();

  bool enabled() const { return enabled_; }
  // The watchdog interval systemd asked for (WATCHDOG_USEC), if any.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_; }

  void Ready(const std::string& status) const;
  void Reloading() const;
  void Stopping() const;
  void Status(const std::string& status) const;
  void Watchdog() const;

 private:
  void Send(const std::string& message) const;

  bool enabled_ = false;
  std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace pmu::daemon
