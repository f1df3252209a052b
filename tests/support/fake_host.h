// A fake /proc and /sys tree for pipelines under test: tests/data/stats/full
// (four CPUs, every kernel statistics source) plus the CPU lists, with the
// online list under the test's control (hotplug).
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

#include "test_support.h"

namespace pmu::testing {

class FakeHost {
 public:
  explicit FakeHost(const std::string& online = "0-3") {
    std::filesystem::copy(std::string(PMU_TEST_DATA_DIR) + "/stats/full", dir_.path(),
                          std::filesystem::copy_options::recursive);
    std::ofstream(dir_.path() + "/sys/devices/system/cpu/possible") << "0-3\n";
    SetOnline(online);
  }
  const std::string& root() const { return dir_.path(); }
  void SetOnline(const std::string& list) {
    std::ofstream(dir_.path() + "/sys/devices/system/cpu/online") << list << "\n";
  }

 private:
  TempDir dir_;
};

}  // namespace pmu::testing
