// Golden tests of event resolution against fake sysfs trees (tests/data/sysfs-*)
// laid out like real hosts. Expected encodings are the ones `perf stat -vv -e
// EVENT` prints for these PMUs (type, config, config1), worked out from the
// same format files the way perf's pmu_format_value places value bits.
#include "pmu/collectors/event_source.h"

#include <gtest/gtest.h>

#include <string>

#include "fake_perf.h"
#include "pmu/collectors/cpu_counters.h"
#include "pmu/collectors/event_plan.h"
#include "pmu/config/config.h"

namespace pmu::collectors {
namespace {

std::string Root(const std::string& tree) { return std::string(PMU_TEST_DATA_DIR) + "/" + tree; }

ResolvedInstance One(const EventResolver& r, const std::string& event) {
  ResolvedEvent e = r.Resolve(event);
  EXPECT_EQ(e.instances.size(), 1u) << event;
  return e.instances.front();
}

EventSpecError::Kind KindOf(const EventResolver& r, const std::string& event) {
  try {
    r.Resolve(event);
  } catch (const EventSpecError& e) {
    return e.kind();
  }
  ADD_FAILURE() << event << " resolved";
  return EventSpecError::Kind::kSyntax;
}

std::string ErrorOf(const EventResolver& r, const std::string& event) {
  try {
    r.Resolve(event);
  } catch (const EventSpecError& e) {
    return e.what();
  }
  return "";
}

TEST(EventSyntax, FormatSpecs) {
  EXPECT_EQ(ParseFormatSpec("config:0-7\n"), (FormatField{0, {{0, 7}}}));
  EXPECT_EQ(ParseFormatSpec("config1:1,6-10,44"), (FormatField{1, {{1, 1}, {6, 10}, {44, 44}}}));
  EXPECT_EQ(ParseFormatSpec("config2:0-63").Width(), 64);
  for (const char* bad : {"", "config", "config:", "config:7-0", "config3:0", "config:0-64",
                          "config:1,1", "config:0-7,", "config:a", "conf:1"}) {
    EXPECT_THROW(ParseFormatSpec(bad), EventSpecError) << bad;
  }
}

TEST(EventSyntax, TermLists) {
  const auto terms = ParseTermList("event=0x3c,umask=1,edge,cmask=?\n");
  ASSERT_EQ(terms.size(), 4u);
  EXPECT_EQ(terms[0].value, 0x3cu);
  EXPECT_EQ(terms[1].value, 1u);
  EXPECT_TRUE(terms[2].bare);
  EXPECT_EQ(terms[2].value, 1u);
  EXPECT_TRUE(terms[3].user_supplied);
  EXPECT_TRUE(ParseTermList("").empty());
  EXPECT_THROW(ParseTermList("event=zz"), EventSpecError);
  EXPECT_THROW(ParseTermList("event=1,,umask=2"), EventSpecError);
  EXPECT_THROW(ParseTermList("event=0x1ffffffffffffffff"), EventSpecError);
}

TEST(EventSyntax, ClassifiesEventStrings) {
  EXPECT_EQ(ParseEventString("msr/tsc/").kind, ParsedEvent::Kind::kSysfs);
  EXPECT_TRUE(ParseEventString("cpu/event=0x3c/u").modifiers.user);
  EXPECT_TRUE(ParseEventString("cpu/event=0x3c/:k").modifiers.kernel);
  EXPECT_EQ(ParseEventString("sched:sched_switch").kind, ParsedEvent::Kind::kTracepoint);
  EXPECT_EQ(ParseEventString("r01c2").raw, 0x1c2u);
  EXPECT_EQ(ParseEventString("r01c2:u").kind, ParsedEvent::Kind::kRaw);
  EXPECT_EQ(ParseEventString("instructions:u").kind, ParsedEvent::Kind::kOther);
  EXPECT_EQ(ParseEventString("perf::cycles").kind, ParsedEvent::Kind::kOther);
  EXPECT_EQ(ParseEventString("ref-cycles").kind, ParsedEvent::Kind::kOther);
  EXPECT_THROW(ParseEventString("cpu/event=1"), EventSpecError);
  EXPECT_THROW(ParseEventString("cpu/event=1/q"), EventSpecError);
  EXPECT_THROW(ParseEventString("/event=1/"), EventSpecError);
}

TEST(EventSyntax, NearestNames) {
  EXPECT_EQ(NearestNames("instrucions", {"instructions", "cycles", "branches"}).front(),
            "instructions");
  EXPECT_TRUE(NearestNames("zzzzzz", {"instructions"}).empty());
}

TEST(IntelServer, CoreTermsAsPerfEncodesThem) {
  EventResolver r(Root("sysfs-intel-server"));
  // perf stat -vv -e cpu/event=0x3c,umask=0x1,cmask=1,edge/: config 0x104013c
  auto i = One(r, "cpu/event=0x3c,umask=0x1,cmask=1,edge/");
  EXPECT_EQ(i.attr.type, 4u);
  EXPECT_EQ(i.attr.config, 0x104013cu);
  EXPECT_EQ(i.scope, EventScope::kCpu);
  EXPECT_TRUE(i.cpus.empty());
  // An alias with a config1 term: config 0x1cd, config1 0x3.
  i = One(r, "cpu/mem-loads/");
  EXPECT_EQ(i.attr.config, 0x1cdu);
  EXPECT_EQ(i.attr.config1, 0x3u);
  // Explicit terms override the alias's.
  EXPECT_EQ(One(r, "cpu/mem-loads,ldlat=50/").attr.config1, 50u);
  // Modifiers, perf's /u and :k.
  i = One(r, "cpu/cpu-cycles/u");
  EXPECT_EQ(i.attr.config, 0x3cu);
  EXPECT_EQ(i.attr.exclude_kernel, 1u);
  EXPECT_EQ(i.attr.exclude_user, 0u);
  i = One(r, "cpu/instructions/:k");
  EXPECT_EQ(i.attr.exclude_user, 1u);
  EXPECT_EQ(i.attr.exclude_kernel, 0u);
  // Without modifiers nothing is excluded (uncore PMUs refuse exclude bits).
  i = One(r, "cpu/ref-cycles/");
  EXPECT_EQ(i.attr.config, 0x300u);
  EXPECT_EQ(i.attr.exclude_user | i.attr.exclude_kernel | i.attr.exclude_hv, 0u);
}

TEST(IntelServer, UncoreImcCoversEveryInstanceOnItsCpumask) {
  EventResolver r(Root("sysfs-intel-server"));
  // perf stat -vv -e uncore_imc/cas_count_read/: one evsel per uncore_imc_N,
  // config 0x304, scale 6.103515625e-5 MiB.
  const ResolvedEvent e = r.Resolve("uncore_imc/cas_count_read/");
  EXPECT_EQ(e.source, "sysfs");
  ASSERT_EQ(e.instances.size(), 4u);
  for (size_t n = 0; n < 4; ++n) {
    const ResolvedInstance& i = e.instances[n];
    EXPECT_EQ(i.pmu, "uncore_imc_" + std::to_string(n));
    EXPECT_EQ(i.attr.type, 13 + n);
    EXPECT_EQ(i.attr.config, 0x304u);
    EXPECT_EQ(i.scope, EventScope::kUnit);
    EXPECT_EQ(i.cpus, (std::vector<int>{0, 2}));
    EXPECT_DOUBLE_EQ(i.scale, 6.103515625e-5);
    EXPECT_EQ(i.unit, "MiB");
  }
  // One instance by its own name.
  EXPECT_EQ(r.Resolve("uncore_imc_2/event=0x04,umask=0x0c/").instances.at(0).attr.type, 15u);
}

TEST(IntelServer, EnergyCstateMsr) {
  EventResolver r(Root("sysfs-intel-server"));
  auto i = One(r, "power/energy-pkg/");  // perf: type 17 config 0x2, 2.3283e-10 Joules
  EXPECT_EQ(i.attr.type, 17u);
  EXPECT_EQ(i.attr.config, 0x2u);
  EXPECT_DOUBLE_EQ(i.scale, 2.3283064365386962890625e-10);
  EXPECT_EQ(i.unit, "Joules");
  EXPECT_EQ(i.scope, EventScope::kUnit);
  i = One(r, "cstate_core/c6-residency/");
  EXPECT_EQ(i.attr.type, 18u);
  EXPECT_EQ(i.attr.config, 0x2u);
  i = One(r, "msr/tsc/");  // type 9 config 0: per CPU, no cpumask
  EXPECT_EQ(i.attr.type, 9u);
  EXPECT_EQ(i.attr.config, 0u);
  EXPECT_EQ(i.scope, EventScope::kCpu);
  EXPECT_EQ(One(r, "msr/smi/").attr.config, 4u);
}

TEST(IntelServer, Tracepoints) {
  EventResolver r(Root("sysfs-intel-server"));
  auto i = One(r, "sched:sched_switch");
  EXPECT_EQ(i.attr.type, static_cast<uint32_t>(PERF_TYPE_TRACEPOINT));
  EXPECT_EQ(i.attr.config, 316u);
  EXPECT_EQ(One(r, "irq:softirq_entry").attr.config, 140u);
  EXPECT_EQ(One(r, "block:block_rq_issue").attr.config, 1220u);
  // A typo in a known subsystem is a configuration error with the nearest name.
  try {
    r.Resolve("sched:sched_swich");
    FAIL();
  } catch (const EventSpecError& e) {
    EXPECT_EQ(e.kind(), EventSpecError::Kind::kUnknownEvent);
    EXPECT_TRUE(e.IsConfigError());
    ASSERT_FALSE(e.nearest().empty());
    EXPECT_EQ(e.nearest().front(), "sched:sched_switch");
  }
  // A subsystem this kernel lacks (a module not loaded): not countable here.
  EXPECT_EQ(KindOf(r, "kvm:kvm_exit"), EventSpecError::Kind::kNotCountableHere);
}

TEST(IntelServer, RawAndSoftware) {
  EventResolver r(Root("sysfs-intel-server"));
  auto i = One(r, "r01c2");
  EXPECT_EQ(i.attr.type, static_cast<uint32_t>(PERF_TYPE_RAW));
  EXPECT_EQ(i.attr.config, 0x1c2u);
  EXPECT_EQ(One(r, "r01c2:u").attr.exclude_kernel, 1u);
  for (const auto& [name, config] : std::vector<std::pair<std::string, uint64_t>>{
           {"alignment-faults", PERF_COUNT_SW_ALIGNMENT_FAULTS},
           {"emulation-faults", PERF_COUNT_SW_EMULATION_FAULTS},
           {"cs", PERF_COUNT_SW_CONTEXT_SWITCHES},
           {"cgroup-switches", 11},
           {"major-faults", PERF_COUNT_SW_PAGE_FAULTS_MAJ}}) {
    i = One(r, name);
    EXPECT_EQ(i.attr.type, static_cast<uint32_t>(PERF_TYPE_SOFTWARE)) << name;
    EXPECT_EQ(i.attr.config, config) << name;
  }
  EXPECT_EQ(One(r, "page-faults:u").attr.exclude_kernel, 1u);
}

TEST(IntelServer, Errors) {
  EventResolver r(Root("sysfs-intel-server"));
  using K = EventSpecError::Kind;
  EXPECT_EQ(KindOf(r, "cpu/event=0x100/"), K::kValueTooWide);
  EXPECT_NE(ErrorOf(r, "cpu/event=0x100/").find("8-bit field"), std::string::npos);
  EXPECT_EQ(KindOf(r, "cpu/evnt=1/"), K::kUnknownTerm);
  EXPECT_EQ(KindOf(r, "msr/tcs/"), K::kUnknownAlias);
  try {
    r.Resolve("msr/tcs/");
  } catch (const EventSpecError& e) {
    EXPECT_EQ(e.nearest().front(), "tsc");
  }
  // A PMU this host lacks (an AMD PMU on Intel): portable, not an error.
  EXPECT_EQ(KindOf(r, "amd_df/event=0x1c7/"), K::kUnknownPmu);
  try {
    r.Resolve("amd_l3/event=1/");
  } catch (const EventSpecError& e) {
    EXPECT_FALSE(e.IsConfigError());
  }
  // Unknown to every encoder.
  EXPECT_EQ(KindOf(r, "no_such_event_xyz"), K::kUnknownEvent);
  try {
    r.Resolve("instrucions");
  } catch (const EventSpecError& e) {
    EXPECT_TRUE(e.IsConfigError());
    EXPECT_NE(std::string(e.what()).find("instructions"), std::string::npos) << e.what();
  }
}

TEST(AmdZen, SplitFieldsAndUncore) {
  EventResolver r(Root("sysfs-amd-zen"));
  // event bits 8-11 go to config 32-35 (perf: config 0x1000000c0).
  EXPECT_EQ(One(r, "cpu/event=0x1c0/").attr.config, 0x1000000c0u);
  // amd_df: event=0x1c7 -> 0xc7 | 1<<32; umask 0x38 at 8-15 (perf: 0x1000038c7).
  auto i = One(r, "amd_df/event=0x1c7,umask=0x38/");
  EXPECT_EQ(i.attr.type, 12u);
  EXPECT_EQ(i.attr.config, 0x1000038c7u);
  EXPECT_EQ(i.cpus, std::vector<int>{0});
  // event=0x3c7: bits 12-13 of the value land in 59-60.
  EXPECT_EQ(One(r, "amd_df/event=0x3c7/").attr.config, 0xc7u | (3ull << 32) | (0ull << 59));
  EXPECT_EQ(One(r, "amd_df/event=0x13c7/").attr.config, 0xc7u | (3ull << 32) | (1ull << 59));
  i = One(r, "amd_l3/event=0x04,umask=0xff,slicemask=0xf,threadmask=0xff/");
  EXPECT_EQ(i.attr.config, 0xff0f00000000ff04u);
  EXPECT_EQ(i.cpus, (std::vector<int>{0, 8}));
  EXPECT_EQ(i.scope, EventScope::kUnit);
}

TEST(Arm, CorePmuWithCpusAndInstanceMatch) {
  EventResolver r(Root("sysfs-arm"));
  auto i = One(r, "armv8_pmuv3_0/inst_retired/");
  EXPECT_EQ(i.attr.type, 8u);
  EXPECT_EQ(i.attr.config, 0x8u);
  EXPECT_EQ(i.cpu_source, PmuCpuSource::kCpus);
  EXPECT_EQ(i.scope, EventScope::kCpu);
  EXPECT_EQ(i.cpus, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(One(r, "armv8_pmuv3/cpu_cycles/").attr.config, 0x11u);  // instance match
  EXPECT_EQ(One(r, "armv8_pmuv3_0/event=0x11,long/").attr.config1, 1u);
  // No tracefs in this tree.
  EXPECT_EQ(KindOf(r, "sched:sched_switch"), EventSpecError::Kind::kTracefsMissing);
  EXPECT_NE(ErrorOf(r, "sched:sched_switch").find("mount -t tracefs"), std::string::npos);
}

TEST(Hybrid, CoreEventsOnTheirOwnCpus) {
  EventResolver r(Root("sysfs-hybrid"));
  auto core = One(r, "cpu_core/instructions/");
  auto atom = One(r, "cpu_atom/instructions/");
  EXPECT_EQ(core.attr.type, 4u);
  EXPECT_EQ(atom.attr.type, 10u);
  EXPECT_EQ(core.attr.config, 0xc0u);
  EXPECT_EQ(atom.attr.config, 0xc0u);
  EXPECT_EQ(core.cpus.front(), 0);
  EXPECT_EQ(atom.cpus.front(), 8);
  // Opened on the CPUs of its PMU only.
  testing::FakePerf perf;
  auto plan = BuildEventPlan(
      {{"ins_core", "cpu_core/instructions/", ""}, {"ins_atom", "cpu_atom/instructions/", ""}},
      perf, 0, r, Root("sysfs-hybrid"));
  ASSERT_EQ(plan.SupportedCount(), 2u);
  CpuCounters on_p(perf, plan, 3, 1);
  CpuCounters on_e(perf, plan, 12, 1);
  ASSERT_EQ(on_p.open_groups(), 1u);
  ASSERT_EQ(on_e.open_groups(), 1u);
  EXPECT_EQ(plan.events[plan.groups[on_p.groups()[0]->group_index()].members[0]].name, "ins_core");
  EXPECT_EQ(plan.events[plan.groups[on_e.groups()[0]->group_index()].members[0]].name, "ins_atom");
}

TEST(Plan, UncoreOncePerUnitWithDieLabels) {
  const std::string root = Root("sysfs-intel-server");
  EventResolver r(root);
  testing::FakePerf perf;
  auto plan = BuildEventPlan({{"imc_read", "uncore_imc/cas_count_read/", ""},
                              {"energy", "power/energy-pkg/", ""},
                              {"tsc", "msr/tsc/", ""},
                              {"cstate", "cstate_core/c6-residency/", ""}},
                             perf, 0, r, root);
  ASSERT_EQ(plan.events.size(), 7u);  // 4 imc instances
  EXPECT_EQ(plan.SupportedCount(), 7u);
  EXPECT_TRUE(plan.events[0].label_by_die);  // cpumask 0,2: one per package
  EXPECT_TRUE(plan.events[4].label_by_die);
  EXPECT_FALSE(plan.events[6].label_by_die);  // cstate_core: one per core
  EXPECT_EQ(plan.locations.at(2).package, 1);
  // Every group enabled after opening; uncore only on CPUs 0 and 2.
  size_t opened_imc = 0;
  for (int cpu = 0; cpu < 4; ++cpu) {
    CpuCounters counters(perf, plan, cpu, 1);
    for (auto& g : counters.groups()) EXPECT_TRUE(perf.enabled(g->fds().front()));
    const size_t expect = (cpu == 0 || cpu == 2) ? 7 : 2;  // 4 imc + power + msr + cstate
    EXPECT_EQ(counters.open_groups(), expect) << cpu;
  }
  for (const auto& [type, config, cpu] : perf.opened()) {
    if (type >= 13 && type <= 16) {
      ++opened_imc;
      EXPECT_TRUE(cpu == 0 || cpu == 2) << cpu;
    }
  }
  EXPECT_EQ(opened_imc, 4u /*probes*/ + 8u);
}

TEST(Plan, MalformedSysfsFilesAreReportedWhereUsed) {
  const std::string root = Root("sysfs-malformed");
  EventResolver r(root);
  using K = EventSpecError::Kind;
  ASSERT_NE(r.catalog().Find("bad"), nullptr);
  EXPECT_EQ(r.catalog().Find("bad")->format_errors.size(), 2u);  // 7-0, config3
  EXPECT_EQ(KindOf(r, "bad/x/"), K::kNotCountableHere);          // event=zz
  EXPECT_EQ(One(r, "bad/y/").attr.config, 0x100u);               // its own terms are fine
  EXPECT_TRUE(One(r, "bad/y/").cpus.empty());                    // cpumask "garbage": none read
  EXPECT_EQ(KindOf(r, "bad/event=1/"), K::kNotCountableHere);    // its format file is unusable
  EXPECT_EQ(KindOf(r, "bad/q/"), K::kUnknownTerm);               // "?" needs a value
  EXPECT_EQ(One(r, "bad/q,ok=3/").attr.config, 3u);
  EXPECT_EQ(One(r, "good/e/").attr.config, 1u);
}

TEST(Validate, ConfigErrorsCarryPositionKeyAndNearest) {
  EventResolver r(Root("sysfs-intel-server"));
  const std::string toml =
      "[[events]]\nname = \"a\"\nevent = \"msr/tsc/\"\n"
      "[[events]]\nname = \"b\"\nevent = \"amd_l3/event=1/\"\n"
      "[[events]]\nname = \"c\"\nevent = \"sched:sched_swich\"\n";
  const config::Config cfg = config::ParseConfig(toml, "t.toml", {});
  try {
    ValidateEventNames(cfg, r);
    FAIL();
  } catch (const config::ConfigError& e) {
    EXPECT_EQ(e.line(), 9);
    EXPECT_EQ(e.column(), 9);
    EXPECT_EQ(e.key(), "events[3].event");
    EXPECT_NE(e.message().find("sched:sched_switch"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace pmu::collectors
