#include "pmu/daemon/logging.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <sstream>

namespace pmu::daemon {
namespace {

TEST(Logging, JournalStreamMatchesOnlyTheFileItNames) {
  char path[] = "/tmp/pmu-journal-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  const std::string mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  EXPECT_TRUE(IsJournalStream(mine.c_str(), fd));
  const std::string other = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1);
  EXPECT_FALSE(IsJournalStream(other.c_str(), fd));
  EXPECT_FALSE(IsJournalStream(nullptr, fd));
  EXPECT_FALSE(IsJournalStream("", fd));
  EXPECT_FALSE(IsJournalStream("12", fd));
  EXPECT_FALSE(IsJournalStream(":5", fd));
  EXPECT_FALSE(IsJournalStream((mine + "x").c_str(), fd));
  close(fd);
  unlink(path);
}

}  // namespace
}  // namespace pmu::daemon
