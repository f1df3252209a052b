// Logging set-up: spdlog's default logger writes to stderr or to the systemd
// journal ([log] target), at the configured level.
//
// Thread safety: ConfigureLogging replaces the default logger; call it from
// the main thread (start-up, reload). Logging itself is thread-safe.
#pragma once

#include "pmu/config/config.h"

namespace pmu::daemon {

// The logger used before any configuration is read: stderr, info.
void InitLogging();

// Applies level and target. kAuto picks the journal when stderr is the
// stream systemd connected to it (IsJournalStream).
void ConfigureLogging(const config::LogConfig& log);

// True when `journal_stream` ("<device>:<inode>", the JOURNAL_STREAM
// variable systemd sets) names the file open on `fd`. Null or malformed:
// false.
bool IsJournalStream(const char* journal_stream, int fd);

}  // namespace pmu::daemon
