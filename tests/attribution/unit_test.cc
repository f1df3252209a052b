#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "pmu/attribution/attribution.h"
#include "pmu/attribution/cgroup_discovery.h"
#include "pmu/config/config.h"
#include "pmu/metrics/exposition.h"
#include "test_support.h"

namespace pmu::attribution {
namespace {

TEST(GlobMatch, SingleStarStaysWithinOneLevel) {
  EXPECT_TRUE(GlobMatch("/system.slice/*.service", "/system.slice/ssh.service"));
  EXPECT_FALSE(GlobMatch("/system.slice/*.service", "/system.slice/a/ssh.service"));
  EXPECT_FALSE(GlobMatch("/system.slice/*.service", "/system.slice/ssh.socket"));
  EXPECT_TRUE(GlobMatch("/a/?b", "/a/xb"));
  EXPECT_FALSE(GlobMatch("/a/?b", "/a//b"));
}

TEST(GlobMatch, DoubleStarCrossesLevelsAndMatchesItsDirectory) {
  EXPECT_TRUE(GlobMatch("/kubepods.slice/**", "/kubepods.slice"));
  EXPECT_TRUE(GlobMatch("/kubepods.slice/**", "/kubepods.slice/a"));
  EXPECT_TRUE(GlobMatch("/kubepods.slice/**", "/kubepods.slice/a/b/c.scope"));
  EXPECT_FALSE(GlobMatch("/kubepods.slice/**", "/kubepods.slicex"));
  EXPECT_TRUE(GlobMatch("/**/*.scope", "/user.slice/user-0.slice/session-1.scope"));
  EXPECT_FALSE(GlobMatch("/**/*.scope", "/user.slice/user-0.slice"));
  EXPECT_TRUE(GlobMatch("/**", "/"));
}

TEST(LabelsFromPath, SystemdUnit) {
  EXPECT_EQ(LabelsFromPath("/system.slice/ssh.service"), (CgroupLabels{"ssh.service", "", ""}));
  EXPECT_EQ(LabelsFromPath("/"), (CgroupLabels{}));
  EXPECT_EQ(LabelsFromPath("/plain/dir"), (CgroupLabels{}));
}

TEST(LabelsFromPath, KubernetesSystemdDriver) {
  const std::string pod =
      "/kubepods.slice/kubepods-burstable.slice/"
      "kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_112233445566.slice";
  EXPECT_EQ(LabelsFromPath(pod),
            (CgroupLabels{"kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_112233445566.slice",
                          "1a2b3c4d-5e6f-7a8b-9c0d-112233445566", ""}));
  EXPECT_EQ(LabelsFromPath(pod + "/cri-containerd-0123abcd.scope"),
            (CgroupLabels{"cri-containerd-0123abcd.scope", "1a2b3c4d-5e6f-7a8b-9c0d-112233445566",
                          "0123abcd"}));
}

TEST(LabelsFromPath, KubernetesCgroupfsDriver) {
  EXPECT_EQ(LabelsFromPath("/kubepods/besteffort/pod42-ab/0123abcd"),
            (CgroupLabels{"", "42-ab", "0123abcd"}));
}

TEST(DetectCgroup2Root, HybridAndUnified) {
  testing::TempDir dir;
  const std::string hybrid =
      dir.Write("hybrid",
                "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
                "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n");
  EXPECT_EQ(DetectCgroup2Root(hybrid), "/sys/fs/cgroup/unified");
  const std::string unified = dir.Write("unified", "cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n");
  EXPECT_EQ(DetectCgroup2Root(unified), "/sys/fs/cgroup");
  EXPECT_EQ(DetectCgroup2Root(dir.Write("none", "proc /proc proc rw 0 0\n")), "");
}

TEST(Discover, IncludeExcludeMaxAndInodeIds) {
  testing::TempDir dir;
  namespace fs = std::filesystem;
  for (const char* p : {"system.slice/a.service", "system.slice/b.service",
                        "system.slice/c.service/sub", "system.slice/d.socket", "user.slice"}) {
    fs::create_directories(fs::path(dir.path()) / p);
  }
  const Discovery all =
      Discover(dir.path(), {"/system.slice/*.service"}, {"/system.slice/b.*"}, 10);
  ASSERT_EQ(all.counted.size(), 2u);
  EXPECT_EQ(all.counted[0].path, "/system.slice/a.service");
  EXPECT_EQ(all.counted[1].path, "/system.slice/c.service");
  struct stat st {};
  ASSERT_EQ(stat((dir.path() + "/system.slice/a.service").c_str(), &st), 0);
  EXPECT_EQ(all.counted[0].id, st.st_ino);
  const Discovery capped = Discover(dir.path(), {"/**"}, {}, 3);
  EXPECT_EQ(capped.matched, 8u);  // "/" and seven directories
  ASSERT_EQ(capped.counted.size(), 3u);
  EXPECT_EQ(capped.counted[0].path, "/");
  EXPECT_EQ(capped.counted[1].path, "/system.slice");
}

TEST(CgroupsConfig, ParsesAndPositionsErrors) {
  const config::Config c = config::ParseConfig(
      "[cgroups]\nenabled = true\nmode = \"perf\"\ninclude = [\"/a/**\"]\nmax = 5\n"
      "rescan = \"2s\"\nevents = [\"cpu-clock\"]\n",
      "t.toml", {});
  EXPECT_TRUE(c.cgroups.enabled);
  EXPECT_EQ(c.cgroups.mode, config::CgroupMode::kPerf);
  EXPECT_EQ(c.cgroups.include, std::vector<std::string>{"/a/**"});
  EXPECT_EQ(c.cgroups.max, 5);
  EXPECT_EQ(c.cgroups.rescan, std::chrono::seconds(2));
  const auto error = [](const std::string& text) {
    try {
      config::ParseConfig(text, "t.toml", {});
    } catch (const config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error("[cgroups]\nmode = \"ebpf\"\n"),
            "t.toml:2:8: cgroups.mode: unknown cgroup mode 'ebpf' (expected auto, bpf or perf)");
  EXPECT_EQ(error("[cgroups]\nevents = [\"cpu-clok\"]\n"),
            "t.toml:2:11: cgroups.events: unknown event 'cpu-clok' (did you mean 'cpu-clock'?)");
  EXPECT_EQ(error("[cgroups]\ninclude = [\"system.slice\"]\n"),
            "t.toml:2:12: cgroups.include: pattern 'system.slice' must start with '/' (paths "
            "are relative to root)");
  EXPECT_EQ(error("[cgroups]\nmax = 0\n"),
            "t.toml:2:7: cgroups.max: 0 is out of range [1, 100000]");
  EXPECT_EQ(error("[cgroups]\nenable = true\n").substr(0, 39),
            "t.toml:2:1: cgroups.enable: unknown key");
}

TEST(Families, SeriesPerCgroupAndEventAndOverflowGauge) {
  auto snapshot = std::make_shared<CgroupSnapshot>();
  snapshot->mode = Mode::kBpf;
  snapshot->events = {"cpu-clock", "page-faults"};
  snapshot->max = 1;
  snapshot->matched = 3;
  snapshot->cgroups.push_back({"/system.slice/a.service",
                               7,
                               {"a.service", "", ""},
                               {{1e9, 2000000000, 1000000000}, {5, 0, 0}}});
  metrics::FamilyCollector out;
  CgroupFamilies(snapshot)->Write(metrics::ExportSnapshot{}, out);
  EXPECT_EQ(out.Value("pmu_cgroup_events_total",
                      {{"cgroup", "/system.slice/a.service"}, {"event", "cpu-clock"}}),
            1e9);
  EXPECT_EQ(out.Value("pmu_cgroup_event_enabled_seconds_total",
                      {{"cgroup", "/system.slice/a.service"}, {"event", "cpu-clock"}}),
            2.0);
  EXPECT_EQ(out.Value("pmu_cgroup_info", {{"cgroup", "/system.slice/a.service"},
                                          {"unit", "a.service"},
                                          {"pod_uid", ""},
                                          {"container_id", ""}}),
            1);
  EXPECT_EQ(out.Value("pmu_cgroup_attribution_mode", {{"mode", "bpf"}}), 1);
  EXPECT_EQ(out.Value("pmu_cgroup_not_counted"), 2);
}

}  // namespace
}  // namespace pmu::attribution
