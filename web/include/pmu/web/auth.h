// HTTP basic authentication against crypt(3) password hashes ([[web.users]]).
//
// Thread safety: PasswordChecker::Check may be called from any thread.
#pragma once

#include <istream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "pmu/config/config.h"

namespace pmu::web {

class PasswordChecker {
 public:
  explicit PasswordChecker(const std::vector<config::WebUser>& users);

  // True when `user` exists and `password` matches its hash. Verification
  // with crypt_r(3) is deliberately slow (yescrypt: milliseconds), so the
  // last password that verified for each user is remembered and a repeat
  // (every scrape from the same Prometheus) costs a constant-time comparison
  // only. Unknown users cost a full hash too, so timing does not tell which
  // user names exist.
  bool Check(const std::string& user, const std::string& password);

 private:
  std::map<std::string, std::string> hashes_;
  std::mutex mutex_;
  std::map<std::string, std::string> verified_;  // user -> last password that verified
};

// A new yescrypt hash of `password` with a random salt. Throws
// std::runtime_error when libcrypt cannot make one.
std::string HashPassword(const std::string& password);

// Reads one line (the password) from `in`, without echo when `fd` is a
// terminal (a prompt goes to stderr then). The trailing newline is removed.
std::string ReadPassword(std::istream& in, int fd);

// Constant-time equality of two strings (time depends on lengths only).
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace pmu::web
