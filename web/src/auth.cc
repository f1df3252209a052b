#include "pmu/web/auth.h"

#include <crypt.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace pmu::web {
namespace {

// A yescrypt hash of 32 random bytes nobody kept: verifying unknown users
// against it costs the same time as a real user.
constexpr const char* kDecoyHash =
    "$y$j9T$0U0FQHXTVdaiAOuokfJrN1$IX6UBfrjP84Zk96NAqWGf7nZ8UuA9vdASc.9l0f6Q3D";

bool CryptMatches(const std::string& password, const std::string& hash) {
  auto data = std::make_unique<crypt_data>();  // ~32 KiB: not on the stack
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* out = crypt_r(password.c_str(), hash.c_str(), data.get());
  // libxcrypt returns a string starting with '*' on failure.
  if (out == nullptr || out[0] == '*') return false;
  return ConstantTimeEquals(out, hash);
}

}  // namespace

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = static_cast<unsigned char>(
        diff | (static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i])));
  }
  return diff == 0;
}

PasswordChecker::PasswordChecker(const std::vector<config::WebUser>& users) {
  for (const auto& u : users) hashes_[u.name] = u.password_hash;
}

bool PasswordChecker::Check(const std::string& user, const std::string& password) {
  auto it = hashes_.find(user);
  if (it == hashes_.end()) {
    CryptMatches(password, kDecoyHash);
    return false;
  }
  {
    std::lock_guard lock(mutex_);
    auto seen = verified_.find(user);
    if (seen != verified_.end() && ConstantTimeEquals(seen->second, password)) return true;
  }
  if (!CryptMatches(password, it->second)) return false;
  std::lock_guard lock(mutex_);
  verified_[user] = password;
  return true;
}

std::string HashPassword(const std::string& password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  // Null random bytes: libcrypt takes them from the kernel (getrandom).
  if (crypt_gensalt_rn("$y$", 0, nullptr, 0, setting, sizeof(setting)) == nullptr) {
    throw std::runtime_error(std::string("cannot make a yescrypt salt: ") + std::strerror(errno));
  }
  auto data = std::make_unique<crypt_data>();
  std::memset(data.get(), 0, sizeof(crypt_data));
  const char* out = crypt_r(password.c_str(), setting, data.get());
  if (out == nullptr || out[0] == '*') {
    throw std::runtime_error(std::string("crypt_r failed: ") + std::strerror(errno));
  }
  return out;
}

std::string ReadPassword(std::istream& in, int fd) {
  termios old{};
  const bool tty = isatty(fd) == 1 && tcgetattr(fd, &old) == 0;
  if (tty) {
    std::fputs("Password: ", stderr);
    std::fflush(stderr);
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  std::string password;
  std::getline(in, password);
  if (tty) {
    tcsetattr(fd, TCSAFLUSH, &old);
    std::fputs("\n", stderr);
  }
  if (!password.empty() && password.back() == '\r') password.pop_back();
  return password;
}

}  // namespace pmu::web
