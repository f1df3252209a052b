// Pipeline rounds against fakes (perf fds from FakePerf, /proc and /sys from
// a temporary tree): one read of each source per round shared by every
// consumer, snapshots published in order, self-metrics that survive hotplug
// and reloads.
#include "pmu/sampling/pipeline.h"

#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fake_host.h"
#include "fake_perf.h"
#include "log_capture.h"
#include "test_support.h"

namespace pmu::sampling {
namespace {

using testing::FakeHost;

config::Config SoftwareConfig() {
  config::Config config = config::DefaultConfig();
  config.events = {{"cs", "context-switches", "", 0, 0}, {"faults", "page-faults", "", 0, 0}};
  return config;
}

PipelineOptions Options(const FakeHost& host) {
  PipelineOptions options;
  options.root = host.root();
  return options;
}

struct ProcStatConsumer : RoundObserver {
  int parses = 0;
  void OnInterval(const IntervalRecord&) override {}
  bool NeedsProcStat() const override { return true; }
  void OnProcStat(const collectors::ProcStat& stat, int64_t) override {
    parses += stat.present ? 1 : 0;
  }
  void EndRound() override {}
};

TEST(Pipeline, ProcStatIsOpenedOnceAndReadOncePerRoundForEveryConsumer) {
  testing::LogCapture quiet;
  FakeHost host;
  testing::FakePerf perf;
  Pipeline pipeline(SoftwareConfig(), perf, Options(host), nullptr);
  ProcStatConsumer consumer;
  pipeline.AddObserver(&consumer);
  // The kernel tells us every open and every read of the file ([stats]
  // proc_stat and the observer both consume it).
  const int inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  ASSERT_GE(inotify, 0);
  ASSERT_GE(inotify_add_watch(inotify, (host.root() + "/proc/stat").c_str(), IN_OPEN | IN_ACCESS),
            0);
  constexpr int kRounds = 5;
  int opens = 0;
  for (int i = 0; i < kRounds; ++i) {
    pipeline.SampleNow();
    // Opens and reads alternate in the queue, so nothing is merged away.
    int round_opens = 0;
    int round_reads = 0;
    alignas(inotify_event) char buf[4096];
    for (ssize_t n; (n = read(inotify, buf, sizeof(buf))) > 0;) {
      for (char* p = buf; p < buf + n;) {
        const auto* event = reinterpret_cast<const inotify_event*>(p);
        round_opens += (event->mask & IN_OPEN) != 0;
        round_reads += (event->mask & IN_ACCESS) != 0;
        p += sizeof(inotify_event) + event->len;
      }
    }
    EXPECT_EQ(round_reads, 1) << "round " << i;  // one pread for every consumer
    opens += round_opens;
  }
  close(inotify);
  EXPECT_EQ(opens, 1);  // the descriptor is held
  EXPECT_EQ(consumer.parses, kRounds);
  const auto latest = pipeline.latest();
  ASSERT_NE(latest, nullptr);
  EXPECT_EQ(latest->round, uint64_t{kRounds});
  EXPECT_EQ(latest->kernel.cpu_time.size(), 4u);
}

TEST(Pipeline, EveryRoundIsPublishedInOrder) {
  testing::LogCapture quiet;
  FakeHost host;
  testing::FakePerf perf;
  Pipeline pipeline(SoftwareConfig(), perf, Options(host), nullptr);
  std::vector<uint64_t> rounds;
  pipeline.SetPublisher(
      [&rounds](std::shared_ptr<const Snapshot> s) { rounds.push_back(s->round); });
  for (int i = 0; i < 3; ++i) pipeline.SampleNow();
  EXPECT_EQ(rounds, (std::vector<uint64_t>{1, 2, 3}));
}

uint64_t SamplerTicks(const Snapshot& snapshot, int cpu) {
  for (const auto& c : snapshot.pipeline.cpus) {
    if (c.cpu == cpu) return c.sampler.ticks;
  }
  return 0;
}

TEST(Pipeline, SamplerCountsSurviveHotplugAndReload) {
  testing::LogCapture quiet;
  FakeHost host;
  testing::FakePerf perf;
  auto first = std::make_unique<Pipeline>(SoftwareConfig(), perf, Options(host), nullptr);
  first->SampleNow();
  first->SampleNow();
  EXPECT_EQ(SamplerTicks(*first->latest(), 2), 2u);
  host.SetOnline("0-1,3");  // cpu 2 goes offline (noticed after this round's ticks)
  first->SampleNow();
  auto offline = first->latest();
  // Three ticks and the last reading taken when it went offline.
  EXPECT_EQ(SamplerTicks(*offline, 2), 4u) << "a stopped sampler's counts are kept";
  EXPECT_FALSE(offline->pipeline.cpus[2].online);
  EXPECT_EQ(offline->pipeline.hotplug_events, 1u);
  host.SetOnline("0-3");
  first->SampleNow();  // cpu 2 comes back: a new sampler, counting on
  first->SampleNow();
  EXPECT_EQ(SamplerTicks(*first->latest(), 2), 5u);
  const uint64_t samples_before = first->latest()->counters[2].group_samples;

  first->Stop();
  Pipeline second(SoftwareConfig(), perf, Options(host), first.get());
  second.SampleNow();
  const auto after = second.latest();
  EXPECT_EQ(SamplerTicks(*after, 2), 6u) << "a reload continues the sampler counts";
  EXPECT_EQ(after->pipeline.hotplug_events, 2u);
  EXPECT_GT(after->counters[2].group_samples, samples_before);
  first.reset();
  EXPECT_EQ(perf.open_count(), second.open_fds());
}

}  // namespace
}  // namespace pmu::sampling
