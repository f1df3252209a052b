// Helpers shared by the fuzz targets: a private fake root directory that
// the /proc and /sys parsers read, rewritten with the input each run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace pmu::fuzz {

// A directory created once per process (removed at exit) that stands in
// for "/": parsers that take a root read <FakeRoot()>/proc/... .
const std::string& FakeRoot();

// Writes `size` bytes to <FakeRoot()>/<relative>, creating directories.
void WriteFakeFile(const std::string& relative, const uint8_t* data, size_t size);

}  // namespace pmu::fuzz
