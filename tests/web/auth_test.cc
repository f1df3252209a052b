#include "pmu/web/auth.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <sstream>

namespace pmu::web {
namespace {

TEST(Auth, HashThenCheckRoundTripsAndRejectsWrongPasswordsAndUsers) {
  const std::string hash = HashPassword("s3cret");
  EXPECT_EQ(hash.rfind("$y$", 0), 0u) << hash;
  EXPECT_NE(HashPassword("s3cret"), hash) << "salts must differ";
  PasswordChecker checker({{"prometheus", hash}});
  EXPECT_TRUE(checker.Check("prometheus", "s3cret"));
  EXPECT_TRUE(checker.Check("prometheus", "s3cret"));  // cached path
  EXPECT_FALSE(checker.Check("prometheus", "s3cret "));
  EXPECT_FALSE(checker.Check("prometheus", ""));
  EXPECT_FALSE(checker.Check("nobody", "s3cret"));
}

TEST(Auth, UnknownUsersCostAFullHashToo) {
  PasswordChecker checker({{"prometheus", HashPassword("s3cret")}});
  auto time = [&](const std::string& user) {
    auto start = std::chrono::steady_clock::now();
    checker.Check(user, "wrong");
    return std::chrono::steady_clock::now() - start;
  };
  const auto known = time("prometheus");
  const auto unknown = time("nobody");
  // Both run yescrypt; an unknown user must not answer in microseconds.
  EXPECT_GT(unknown, known / 4) << "unknown user answered much faster than a known one";
}

TEST(Auth, ReadPasswordStripsTheLineEnd) {
  std::istringstream in("pa ss\r\nrest\n");
  EXPECT_EQ(ReadPassword(in, -1), "pa ss");
}

TEST(Auth, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

}  // namespace
}  // namespace pmu::web
