#include "pmu/daemon/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace pmu::daemon {
namespace {

constexpr const char* kLoggerName = "pmu-exporter";

spdlog::level::level_enum ToSpdlog(config::LogLevel level) {
  switch (level) {
    case config::LogLevel::kTrace:
      return spdlog::level::trace;
    case config::LogLevel::kDebug:
      return spdlog::level::debug;
    case config::LogLevel::kInfo:
      return spdlog::level::info;
    case config::LogLevel::kWarn:
      return spdlog::level::warn;
    case config::LogLevel::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> StderrLogger() {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(kLoggerName, sink);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%-5l%$ %v");
  return logger;
}

// The journal stamps time, priority and identifier itself: the message only.
std::shared_ptr<spdlog::logger> JournalLogger() {
  auto sink = std::make_shared<spdlog::sinks::systemd_sink_mt>(kLoggerName);
  auto logger = std::make_shared<spdlog::logger>(kLoggerName, sink);
  logger->set_pattern("%v");
  return logger;
}

}  // namespace

bool IsJournalStream(const char* journal_stream, int fd) {
  if (journal_stream == nullptr) return false;
  const char* colon = std::strchr(journal_stream, ':');
  if (colon == nullptr || colon == journal_stream || colon[1] == '\0') return false;
  char* end = nullptr;
  const unsigned long long dev = std::strtoull(journal_stream, &end, 10);
  if (end != colon) return false;
  const unsigned long long ino = std::strtoull(colon + 1, &end, 10);
  if (*end != '\0') return false;
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

void InitLogging() {
  auto logger = StderrLogger();
  logger->set_level(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void ConfigureLogging(const config::LogConfig& log) {
  const bool journal = log.target == config::LogTarget::kJournald ||
                       (log.target == config::LogTarget::kAuto &&
                        IsJournalStream(std::getenv("JOURNAL_STREAM"), STDERR_FILENO));
  auto logger = journal ? JournalLogger() : StderrLogger();
  logger->set_level(ToSpdlog(log.level));
  // Warnings and errors reach the journal at once, even if we crash next.
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

}  // namespace pmu::daemon
