#include "pmu/sampling/cpu_uevents.h"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace pmu::sampling {
namespace {

// A message is "action@devpath\0KEY=value\0...": a CPU's is under
// /devices/system/cpu/cpuN, or says SUBSYSTEM=cpu.
bool IsCpuEvent(std::string_view message) {
  const std::string_view head = message.substr(0, message.find('\0'));
  if (head.find("@/devices/system/cpu/cpu") != std::string_view::npos) return true;
  return message.find(std::string_view("\0SUBSYSTEM=cpu\0", 15)) != std::string_view::npos;
}

}  // namespace

CpuUevents::CpuUevents() {
  fd_ = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
  if (fd_ < 0) {
    error_ = std::string("socket(NETLINK_KOBJECT_UEVENT): ") + std::strerror(errno);
    return;
  }
  sockaddr_nl address{};
  address.nl_family = AF_NETLINK;
  address.nl_groups = 1;  // the kernel's own uevents (udev's are group 2)
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    error_ = std::string("bind(NETLINK_KOBJECT_UEVENT): ") + std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
  }
}

CpuUevents::~CpuUevents() {
  if (fd_ >= 0) ::close(fd_);
}

bool CpuUevents::DrainCpuEvents() {
  if (fd_ < 0) return false;
  bool cpu = false;
  char buffer[8192];
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return cpu || errno == ENOBUFS;  // ENOBUFS: messages were lost
    if (n == 0) return cpu;
    cpu = cpu || IsCpuEvent(std::string_view(buffer, static_cast<size_t>(n)));
  }
}

}  // namespace pmu::sampling
