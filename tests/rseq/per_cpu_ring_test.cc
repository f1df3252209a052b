#include "pmu/rseq/per_cpu_ring.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <stdexcept>
#include <thread>
#include <vector>

#include "scoped_pin.h"

namespace pmu::rseq {
namespace {

using testing::ScopedPinHere;

struct Rec {
  std::uint64_t seq;
  std::uint64_t check;
};

struct OddRec {  // 12 bytes: exercises the padded copy
  std::uint32_t a, b, c;
};

TEST(PerCpuRing, RejectsBadCapacity) {
  EXPECT_THROW(PerCpuRing<Rec>(2, 3), std::invalid_argument);
  EXPECT_THROW(PerCpuRing<Rec>(2, 1), std::invalid_argument);
  EXPECT_THROW(PerCpuRing<Rec>(0, 8), std::invalid_argument);
}

TEST(PerCpuRing, PushThenDrainInOrder) {
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  PerCpuRing<Rec> ring(PossibleCpuCount(), 16);
  for (std::uint64_t i = 0; i < 10; ++i) {
    const PushResult r = ring.TryPush(Rec{i, ~i});
    ASSERT_EQ(r.status, PushStatus::kPushed);
    EXPECT_EQ(r.cpu, pin.cpu());
  }
  std::vector<std::uint64_t> seen;
  EXPECT_EQ(ring.DrainAll([&](int cpu, const Rec& rec) {
    EXPECT_EQ(cpu, pin.cpu());
    EXPECT_EQ(rec.check, ~rec.seq);
    seen.push_back(rec.seq);
  }),
            10u);
  ASSERT_EQ(seen.size(), 10u);
  for (std::uint64_t i = 0; i < 10; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_EQ(ring.DrainAll([](int, const Rec&) {}), 0u);
}

TEST(PerCpuRing, FullRingDropsAndKeepsUnreadData) {
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  PerCpuRing<Rec> ring(PossibleCpuCount(), 8);
  for (std::uint64_t i = 0; i < 8; ++i)
    ASSERT_EQ(ring.TryPush(Rec{i, ~i}).status, PushStatus::kPushed);
  const PushResult full = ring.TryPush(Rec{99, ~99ull});
  EXPECT_EQ(full.status, PushStatus::kDropped);
  EXPECT_EQ(ring.drops(), 1u);
  std::uint64_t next = 0;
  ring.Drain(pin.cpu(), [&](int, const Rec& rec) { EXPECT_EQ(rec.seq, next++); });
  EXPECT_EQ(next, 8u);
  EXPECT_EQ(ring.TryPush(Rec{8, ~8ull}).status, PushStatus::kPushed);  // wraps around
  ring.Drain(pin.cpu(), [&](int, const Rec& rec) { EXPECT_EQ(rec.seq, 8u); });
}

TEST(PerCpuRing, TryPushOnCpuRefusesOtherCpus) {
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  const int n = PossibleCpuCount();
  PerCpuRing<Rec> ring(n, 8);
  EXPECT_EQ(ring.TryPushOnCpu(pin.cpu(), Rec{1, ~1ull}).status, PushStatus::kPushed);
  if (n > 1) {
    EXPECT_EQ(ring.TryPushOnCpu((pin.cpu() + 1) % n, Rec{2, ~2ull}).status, PushStatus::kWrongCpu);
  }
  EXPECT_EQ(ring.TryPushOnCpu(-1, Rec{3, 0}).status, PushStatus::kWrongCpu);
  EXPECT_EQ(ring.TryPushOnCpu(n, Rec{3, 0}).status, PushStatus::kWrongCpu);
  EXPECT_EQ(ring.DrainAll([](int, const Rec&) {}), 1u);
}

TEST(PerCpuRing, OddSizedRecordsRoundTrip) {
  PerCpuRing<OddRec> ring(PossibleCpuCount(), 4);
  ASSERT_EQ(ring.TryPush(OddRec{1, 2, 3}).status, PushStatus::kPushed);
  int n = 0;
  ring.DrainAll([&](int, const OddRec& r) {
    EXPECT_EQ(r.a, 1u);
    EXPECT_EQ(r.b, 2u);
    EXPECT_EQ(r.c, 3u);
    ++n;
  });
  EXPECT_EQ(n, 1);
}

TEST(PerCpuRing, QuiescedRingTakesTheFallbackPath) {
  ScopedPinHere pin;
  if (!pin.pinned()) GTEST_SKIP() << "cannot pin to one CPU";
  const int n = PossibleCpuCount();
  PerCpuRing<Rec> ring(n, 8);
  ASSERT_TRUE(ring.Quiesce(pin.cpu()));
  // Our ring is locked: TryPush goes to another CPU's ring under its lock
  // (or reports contention on a 1-CPU machine); TryPushOnCpu cannot wait.
  const PushResult r = ring.TryPush(Rec{5, ~5ull});
  if (n > 1) {
    EXPECT_EQ(r.status, PushStatus::kPushed);
    EXPECT_NE(r.cpu, pin.cpu());
  } else {
    EXPECT_EQ(r.status, PushStatus::kContended);
  }
  EXPECT_EQ(ring.TryPushOnCpu(pin.cpu(), Rec{6, ~6ull}).status, PushStatus::kContended);
  ring.Unquiesce(pin.cpu());
  EXPECT_EQ(ring.TryPushOnCpu(pin.cpu(), Rec{7, ~7ull}).status, PushStatus::kPushed);
  EXPECT_EQ(ring.DrainAll([](int, const Rec& rec) { EXPECT_EQ(rec.check, ~rec.seq); }),
            n > 1 ? 2u : 1u);
}

TEST(PerCpuRing, ManyProducersOneConsumerExactlyOnce) {
  const int n = PossibleCpuCount();
  PerCpuRing<Rec> ring(n, 1024);
  constexpr int kProducers = 8;
  constexpr std::uint64_t kPerProducer = 50000;
  std::atomic<int> done{0};
  std::vector<std::uint64_t> next(kProducers, 0);
  std::vector<std::uint64_t> received(kProducers, 0);
  std::thread consumer([&] {
    auto check = [&](int, const Rec& rec) {
      const auto p = static_cast<std::size_t>(rec.check);
      ASSERT_LT(p, next.size());
      ++received[p];
    };
    while (done.load() < kProducers) ring.DrainAll(check);
    ring.DrainAll(check);
  });
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      ThreadRegistration registration;
      for (std::uint64_t i = 0; i < kPerProducer;) {
        if (ring.TryPush(Rec{i, static_cast<std::uint64_t>(p)}).status == PushStatus::kPushed) {
          ++i;
        } else {
          sched_yield();
        }
      }
      done.fetch_add(1);
    });
  }
  for (auto& t : producers) t.join();
  consumer.join();
  for (int p = 0; p < kProducers; ++p)
    EXPECT_EQ(received[static_cast<std::size_t>(p)], kPerProducer);
}

}  // namespace
}  // namespace pmu::rseq
