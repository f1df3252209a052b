// Tests of pmu::config: every rejected input names file, line, column and key;
// value parsers round-trip; the packaged config equals the built-in default.
#include "pmu/config/config.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace pmu::config {
namespace {

using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;

constexpr char kSource[] = "test.toml";

Config Parse(const std::string& text, std::vector<int> possible_cpus = {}) {
  return ParseConfig(text, kSource, ParseContext{std::move(possible_cpus)});
}

// ---------------------------------------------------------------------------
// Rejected inputs, table-driven.

struct BadCase {
  std::string name;  // test name suffix
  std::string toml;  // whole file
  int line;          // expected position, 1-based
  int column;
  std::string key;       // expected dotted key ("" for syntax errors)
  std::string fragment;  // must occur in message()
  std::vector<int> possible_cpus = {};
};

// "[table]\nkey = \"value\"\n": the value starts at line 2, column len(key) + 4.
std::string StringKey(const std::string& table, const std::string& key, const std::string& value) {
  return "[" + table + "]\n" + key + " = \"" + value + "\"\n";
}

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class BadConfigTest : public testing::TestWithParam<BadCase> {};

TEST_P(BadConfigTest, ThrowsPositionedError) {
  const BadCase& c = GetParam();
  try {
    Parse(c.toml, c.possible_cpus);
    FAIL() << "accepted:\n" << c.toml;
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.file(), kSource);
    EXPECT_EQ(e.line(), c.line) << e.what();
    EXPECT_EQ(e.column(), c.column) << e.what();
    EXPECT_EQ(e.key(), c.key) << e.what();
    EXPECT_NE(e.message().find(c.fragment), std::string::npos)
        << "message: " << e.message() << "\nwanted: " << c.fragment;
    std::string prefix =
        std::string(kSource) + ":" + std::to_string(c.line) + ":" + std::to_string(c.column) + ": ";
    if (!c.key.empty()) prefix += c.key + ": ";
    EXPECT_EQ(std::string(e.what()), prefix + e.message());
  }
}

std::string CaseName(const testing::TestParamInfo<BadCase>& info) { return info.param.name; }

std::vector<BadCase> SyntaxCases() {
  return {
      {"UnterminatedString", "[log]\nlevel = \"info\n", 2, 14, "", "invalid TOML"},
      {"MissingValue", "[sampling]\ninterval =\n", 2, 11, "", "invalid TOML"},
      {"DuplicateKey", "[log]\nlevel = \"info\"\nlevel = \"warn\"\n", 3, 9, "", "invalid TOML"},
      {"DuplicateTable", "[log]\n[log]\n", 2, 1, "", "redefine"},
      {"UnclosedHeader", "[exporter\nlisten = \"127.0.0.1:1\"\n", 1, 10, "", "invalid TOML"},
  };
}
INSTANTIATE_TEST_SUITE_P(Syntax, BadConfigTest, testing::ValuesIn(SyntaxCases()), CaseName);

std::vector<BadCase> UnknownKeyCases() {
  return {
      {"RootNoSuggestion", "\nfoo = 1\n", 2, 1, "foo",
       "unknown key 'foo' (known keys: exporter, sampling, log, stats, web, events, derived, "
       "cgroups)"},
      {"RootEventsTypo", "[[event]]\nname = \"a\"\n", 1, 3, "event",
       "unknown key 'event' (did you mean 'events'?)"},
      {"RootTableTypo", "[sampleing]\n", 1, 2, "sampleing", "(did you mean 'sampling'?)"},
      {"Exporter", "[exporter]\nlsiten = \"127.0.0.1:1\"\n", 2, 1, "exporter.lsiten",
       "unknown key 'lsiten' (did you mean 'listen'?)"},
      {"ExporterDotted", "exporter.port_fil = \"x\"\n", 1, 10, "exporter.port_fil",
       "(did you mean 'port_file'?)"},
      {"Sampling", "[sampling]\n  intervall = \"1s\"\n", 2, 3, "sampling.intervall",
       "unknown key 'intervall' (did you mean 'interval'?)"},
      {"SamplingTwoEdits", "[sampling]\nintrvl = \"1s\"\n", 2, 1, "sampling.intrvl",
       "(did you mean 'interval'?)"},
      {"Log", "[log]\nlevle = \"info\"\n", 2, 1, "log.levle", "(did you mean 'level'?)"},
      {"LogShortTypo", "[log]\nlvl = \"info\"\n", 2, 1, "log.lvl", "(did you mean 'level'?)"},
      {"LogFarTypo", "[log]\nverbosity = \"info\"\n", 2, 1, "log.verbosity",
       "unknown key 'verbosity' (known keys: level, target)"},
      {"Event", "[[events]]\nname = \"a\"\nevnt = \"b\"\n", 3, 1, "events[1].evnt",
       "(did you mean 'event'?)"},
      {"SecondEvent",
       "[[events]]\nname = \"a\"\nevent = \"b\"\n[[events]]\nname = \"c\"\nevent = \"d\"\n"
       "grop = \"g\"\n",
       7, 1, "events[2].grop", "(did you mean 'group'?)"},
  };
}
INSTANTIATE_TEST_SUITE_P(UnknownKey, BadConfigTest, testing::ValuesIn(UnknownKeyCases()), CaseName);

std::vector<BadCase> WrongTypeCases() {
  return {
      {"IntervalInteger", "[sampling]\ninterval = 5\n", 2, 12, "sampling.interval",
       "expected a string like \"1s\", got an integer"},
      {"ListenInteger", "[exporter]\nlisten = 9842\n", 2, 10, "exporter.listen",
       "expected a string like \"127.0.0.1:9842\", got an integer"},
      {"CpusArray", "[sampling]\ncpus = [0, 1]\n", 2, 8, "sampling.cpus", "got an array"},
      {"LevelBoolean", "[log]\nlevel = true\n", 2, 9, "log.level", "got a boolean"},
      {"PortFileInteger", "[exporter]\nport_file = 1\n", 2, 13, "exporter.port_file",
       "got an integer"},
      {"ExporterNotTable", "exporter = \"127.0.0.1:1\"\n", 1, 12, "exporter",
       "expected a table, got a string"},
      {"EventsString", "events = \"x\"\n", 1, 10, "events",
       "expected an array of tables ([[events]] entries), got a string"},
      {"EventsElementInteger", "events = [1]\n", 1, 11, "events[1]",
       "expected a table with 'name' and 'event', got an integer"},
      {"EventNameInteger", "[[events]]\nname = 5\nevent = \"x\"\n", 2, 8, "events[1].name",
       "got an integer"},
      {"EventGroupBoolean", "[[events]]\nname = \"a\"\nevent = \"b\"\ngroup = true\n", 4, 9,
       "events[1].group", "got a boolean"},
  };
}
INSTANTIATE_TEST_SUITE_P(WrongType, BadConfigTest, testing::ValuesIn(WrongTypeCases()), CaseName);

std::vector<BadCase> StatsCases() {
  return {
      {"ProcStatInteger", "[stats]\nproc_stat = 1\n", 2, 13, "stats.proc_stat",
       "expected a boolean (true or false), got an integer"},
      {"SoftirqsString", "[stats]\nsoftirqs = \"no\"\n", 2, 12, "stats.softirqs",
       "expected a boolean (true or false), got a string"},
      {"CpufreqArray", "[stats]\ncpufreq = [true]\n", 2, 11, "stats.cpufreq", "got an array"},
      {"NotTable", "stats = true\n", 1, 9, "stats", "expected a table, got a boolean"},
      {"UnknownKeyTypo", "[stats]\nschedstats = true\n", 2, 1, "stats.schedstats",
       "(did you mean 'schedstat'?)"},
      {"UnknownKey", "[stats]\nnetwork = false\n", 2, 1, "stats.network",
       "unknown key 'network' (known keys: proc_stat, softirqs, schedstat, cpufreq)"},
  };
}
INSTANTIATE_TEST_SUITE_P(Stats, BadConfigTest, testing::ValuesIn(StatsCases()), CaseName);

// A valid yescrypt hash of "s3cret".
const std::string kHash =
    "$y$j9T$VNt3kLpK1Lw8fcNsDjQ8P.$i2li5guTQzOi5JJEJCa5wqYhfb1yJVZREGGNgYIYll/";

std::vector<BadCase> WebCases() {
  return {
      {"RatioZero", "[sampling]\nmin_running_ratio = 0.0\n", 2, 21, "sampling.min_running_ratio",
       "must be in (0, 1]"},
      {"RatioAboveOne", "[sampling]\nmin_running_ratio = 2\n", 2, 21, "sampling.min_running_ratio",
       "must be in (0, 1]"},
      {"RatioString", "[sampling]\nmin_running_ratio = \"half\"\n", 2, 21,
       "sampling.min_running_ratio", "expected a number like 0.5, got a string"},
      {"LogTarget", "[log]\ntarget = \"syslog\"\n", 2, 10, "log.target",
       "unknown log target 'syslog' (expected auto, stderr or journald)"},
      {"CertWithoutKey", "[web]\ntls_cert_file = \"/etc/c.pem\"\n", 2, 17, "web.tls_key_file",
       "TLS needs both tls_cert_file and tls_key_file"},
      {"KeyWithoutCert", "[web]\ntls_key_file = \"/etc/k.pem\"\n", 2, 16, "web.tls_cert_file",
       "TLS needs both"},
      {"MaxConnectionsZero", "[web]\nmax_connections = 0\n", 2, 19, "web.max_connections",
       "0 is out of range [1, 65536]"},
      {"MaxConnectionsString", "[web]\nmax_connections = \"10\"\n", 2, 19, "web.max_connections",
       "expected an integer, got a string"},
      {"RequestBytesTiny", "[web]\nmax_request_bytes = 10\n", 2, 21, "web.max_request_bytes",
       "out of range [1024, 1048576]"},
      {"RequestTimeout", "[web]\nrequest_timeout = \"0s\"\n", 2, 19, "web.request_timeout", ""},
      {"UnknownWebKey", "[web]\ntls_cert_fil = \"x\"\n", 2, 1, "web.tls_cert_fil",
       "did you mean 'tls_cert_file'?"},
      {"UsersNotArray", "[web]\nusers = \"bob\"\n", 2, 9, "web.users",
       "expected an array of tables ([[web.users]] entries)"},
      {"UserMissingHash", "[[web.users]]\nname = \"bob\"\n", 1, 1, "web.users[1].password_hash",
       "missing required key 'password_hash'"},
      {"UserMissingName", "[[web.users]]\npassword_hash = \"" + kHash + "\"\n", 1, 1,
       "web.users[1].name", "missing required key 'name'"},
      {"UserColon", "[[web.users]]\nname = \"a:b\"\npassword_hash = \"" + kHash + "\"\n", 2, 8,
       "web.users[1].name", "no ':'"},
      {"PlainPassword", "[[web.users]]\nname = \"bob\"\npassword_hash = \"s3cret\"\n", 3, 17,
       "web.users[1].password_hash", "make one with pmu-exporter --hash-password"},
      {"LockedHash", "[[web.users]]\nname = \"bob\"\npassword_hash = \"!\"\n", 3, 17,
       "web.users[1].password_hash", "not a crypt(3) password hash"},
      {"DuplicateUser",
       "[[web.users]]\nname = \"bob\"\npassword_hash = \"" + kHash +
           "\"\n[[web.users]]\nname = \"bob\"\npassword_hash = \"" + kHash + "\"\n",
       5, 8, "web.users[2].name", "duplicate user 'bob'"},
      {"UserUnknownKey", "[[web.users]]\nname = \"bob\"\npassword = \"x\"\n", 3, 1,
       "web.users[1].password", ""},
  };
}
INSTANTIATE_TEST_SUITE_P(Web, BadConfigTest, testing::ValuesIn(WebCases()), CaseName);

std::vector<BadCase> DurationCases() {
  return {
      {"Zero", StringKey("sampling", "interval", "0s"), 2, 12, "sampling.interval",
       "'0s' must be positive"},
      {"ZeroFraction", StringKey("sampling", "interval", "0.0ms"), 2, 12, "sampling.interval",
       "must be positive"},
      {"Negative", StringKey("sampling", "interval", "-1s"), 2, 12, "sampling.interval",
       "'-1s' must be positive"},
      {"UnknownUnit", StringKey("sampling", "interval", "1 parsec"), 2, 12, "sampling.interval",
       "unknown unit 'parsec'"},
      {"Empty", StringKey("sampling", "interval", ""), 2, 12, "sampling.interval",
       "empty duration"},
      {"NoUnit", StringKey("sampling", "interval", "10"), 2, 12, "sampling.interval",
       "'10' has no unit"},
      {"NoNumber", StringKey("sampling", "interval", "s"), 2, 12, "sampling.interval",
       "expected a number"},
      {"DotWithoutDigits", StringKey("sampling", "interval", "1.s"), 2, 12, "sampling.interval",
       "no digits after '.'"},
      {"FinerThanNs", StringKey("sampling", "interval", "1.5ns"), 2, 12, "sampling.interval",
       "finer than 1ns"},
      {"Overflow", StringKey("sampling", "interval", "9999999h"), 2, 12, "sampling.interval",
       "too long"},
      // Accepted once, but could not run: 186% CPU, overflowing schedules,
      // never sampling, every connection closed unanswered.
      {"IntervalBelowBound", StringKey("sampling", "interval", "1ns"), 2, 12, "sampling.interval",
       "interval '1ns' is out of range [1ms, 1h]"},
      {"IntervalJustBelowBound", StringKey("sampling", "interval", "999us"), 2, 12,
       "sampling.interval", "out of range [1ms, 1h]"},
      {"IntervalNearInt64Max", StringKey("sampling", "interval", "2562047h"), 2, 12,
       "sampling.interval", "out of range [1ms, 1h]"},
      {"IntervalAboveBound", StringKey("sampling", "interval", "99999h"), 2, 12,
       "sampling.interval", "out of range [1ms, 1h]"},
      {"IntervalJustAboveBound", StringKey("sampling", "interval", "3600.000000001s"), 2, 12,
       "sampling.interval", "out of range"},
      {"RequestTimeoutNearInt64Max", StringKey("web", "request_timeout", "2562047h"), 2, 19,
       "web.request_timeout", "request_timeout '2562047h' is out of range [1ms, 24h]"},
      {"IdleTimeoutBelowBound", StringKey("web", "idle_timeout", "1ns"), 2, 16, "web.idle_timeout",
       "idle_timeout '1ns' is out of range [1ms, 24h]"},
      {"IdleTimeoutAboveBound", StringKey("web", "idle_timeout", "25h"), 2, 16, "web.idle_timeout",
       "out of range [1ms, 24h]"},
  };
}

TEST(DurationBoundsTest, BoundsThemselvesAreAccepted) {
  EXPECT_EQ(Parse(StringKey("sampling", "interval", "1ms")).sampling.interval, milliseconds(1));
  EXPECT_EQ(Parse(StringKey("sampling", "interval", "1h")).sampling.interval, hours(1));
  EXPECT_EQ(Parse(StringKey("web", "request_timeout", "24h")).web.request_timeout, hours(24));
  EXPECT_EQ(Parse(StringKey("web", "idle_timeout", "1ms")).web.idle_timeout, milliseconds(1));
}
INSTANTIATE_TEST_SUITE_P(Duration, BadConfigTest, testing::ValuesIn(DurationCases()), CaseName);

std::vector<BadCase> CpuCases() {
  return {
      {"Reversed", StringKey("sampling", "cpus", "3-1"), 2, 8, "sampling.cpus",
       "CPU range '3-1' is reversed"},
      {"Letter", StringKey("sampling", "cpus", "a"), 2, 8, "sampling.cpus",
       "invalid CPU list entry 'a'"},
      {"EmptyEntry", StringKey("sampling", "cpus", "1,,2"), 2, 8, "sampling.cpus",
       "empty entry in CPU list '1,,2'"},
      {"TrailingComma", StringKey("sampling", "cpus", "1,"), 2, 8, "sampling.cpus", "empty entry"},
      {"Empty", StringKey("sampling", "cpus", ""), 2, 8, "sampling.cpus", "empty CPU list"},
      {"Negative", StringKey("sampling", "cpus", "-1"), 2, 8, "sampling.cpus", "not negative"},
      {"OpenRange", StringKey("sampling", "cpus", "1-"), 2, 8, "sampling.cpus",
       "invalid CPU list entry '1-'"},
      {"TooLarge", StringKey("sampling", "cpus", "70000"), 2, 8, "sampling.cpus",
       "too large (at most 65535)"},
      {"AllUppercase", StringKey("sampling", "cpus", "ALL"), 2, 8, "sampling.cpus",
       "invalid CPU list entry 'ALL'"},
      {"DoesNotExist",
       StringKey("sampling", "cpus", "0-3"),
       2,
       8,
       "sampling.cpus",
       "CPU 2 does not exist on this host (possible CPUs: 0-1)",
       {0, 1}},
      {"GapDoesNotExist",
       StringKey("sampling", "cpus", "5"),
       2,
       8,
       "sampling.cpus",
       "CPU 5 does not exist",
       {0, 1, 2, 3, 4, 6, 7}},
  };
}
INSTANTIATE_TEST_SUITE_P(CpuList, BadConfigTest, testing::ValuesIn(CpuCases()), CaseName);

std::vector<BadCase> ListenCases() {
  return {
      {"MissingPort", StringKey("exporter", "listen", "127.0.0.1"), 2, 10, "exporter.listen",
       "has no port"},
      {"EmptyPort", StringKey("exporter", "listen", "127.0.0.1:"), 2, 10, "exporter.listen",
       "is not a number"},
      {"PortTooLarge", StringKey("exporter", "listen", "127.0.0.1:65536"), 2, 10, "exporter.listen",
       "port '65536' in listen address '127.0.0.1:65536' is out of range"},
      {"PortName", StringKey("exporter", "listen", "127.0.0.1:http"), 2, 10, "exporter.listen",
       "is not a number"},
      {"HostName", StringKey("exporter", "listen", "localhost:80"), 2, 10, "exporter.listen",
       "host 'localhost' is not an IP address: host names are not resolved"},
      {"ShortIpv4", StringKey("exporter", "listen", "1.2.3:80"), 2, 10, "exporter.listen",
       "'1.2.3' is not a valid IPv4 address"},
      {"Ipv4OctetTooLarge", StringKey("exporter", "listen", "1.2.3.256:80"), 2, 10,
       "exporter.listen", "not a valid IPv4 address"},
      {"NoHost", StringKey("exporter", "listen", ":80"), 2, 10, "exporter.listen", "has no host"},
      {"Empty", StringKey("exporter", "listen", ""), 2, 10, "exporter.listen",
       "empty listen address"},
      {"UnclosedBracket", StringKey("exporter", "listen", "[::1"), 2, 10, "exporter.listen",
       "lacks the ']'"},
      {"Ipv6MissingPort", StringKey("exporter", "listen", "[::1]"), 2, 10, "exporter.listen",
       "has no port"},
      {"Ipv6JunkAfterBracket", StringKey("exporter", "listen", "[::1]x80"), 2, 10,
       "exporter.listen", "expected ':' and a port after ']'"},
      {"BadIpv6", StringKey("exporter", "listen", "[::g]:80"), 2, 10, "exporter.listen",
       "'::g' is not a valid IPv6 address"},
      {"Ipv6TooManyGroups", StringKey("exporter", "listen", "[1:2:3:4:5:6:7:8:9]:80"), 2, 10,
       "exporter.listen", "not a valid IPv6 address"},
      {"Ipv6WithoutBrackets", StringKey("exporter", "listen", "::1:80"), 2, 10, "exporter.listen",
       "must be in brackets"},
  };
}
INSTANTIATE_TEST_SUITE_P(Listen, BadConfigTest, testing::ValuesIn(ListenCases()), CaseName);

std::vector<BadCase> OtherValueCases() {
  return {
      {"MetricsPathRelative", "[exporter]\nmetrics_path = \"metrics\"\n", 2, 16,
       "exporter.metrics_path", "must start with '/'"},
      {"MetricsPathEmpty", "[exporter]\nmetrics_path = \"\"\n", 2, 16, "exporter.metrics_path",
       "must start with '/'"},
      {"MetricsPathQuery", "[exporter]\nmetrics_path = \"/m?x=1\"\n", 2, 16,
       "exporter.metrics_path", "must not contain"},
      {"MetricsPathNul", "[exporter]\nmetrics_path = \"/m\\u0000x\"\n", 2, 16,
       "exporter.metrics_path", "must not contain byte 0x00"},
      {"MetricsPathControl", "[exporter]\nmetrics_path = \"/m\\u001bx\"\n", 2, 16,
       "exporter.metrics_path", "must not contain byte 0x1b"},
      {"MetricsPathDelete", "[exporter]\nmetrics_path = \"/m\\u007f\"\n", 2, 16,
       "exporter.metrics_path", "must not contain byte 0x7f"},
      {"MetricsPathHtml", "[exporter]\nmetrics_path = \"/\\\"><script>\"\n", 2, 16,
       "exporter.metrics_path", "must not contain '\"'"},
      {"MetricsPathNonAscii", "[exporter]\nmetrics_path = \"/m\u00e9trics\"\n", 2, 16,
       "exporter.metrics_path", "must not contain byte 0xc3"},
      {"LogLevel", "[log]\nlevel = \"verbose\"\n", 2, 9, "log.level",
       "unknown log level 'verbose' (expected trace, debug, info, warn or error)"},
      {"LogLevelUppercase", "[log]\nlevel = \"INFO\"\n", 2, 9, "log.level", "unknown log level"},
  };
}
INSTANTIATE_TEST_SUITE_P(Value, BadConfigTest, testing::ValuesIn(OtherValueCases()), CaseName);

std::vector<BadCase> EventCases() {
  return {
      {"EmptyList", "events = []\n", 1, 10, "events", "empty event list"},
      {"DuplicateName",
       "[[events]]\nname = \"a\"\nevent = \"x\"\n\n[[events]]\nname = \"a\"\nevent = \"y\"\n", 6, 8,
       "events[2].name", "duplicate event name 'a' (first defined at line 2)"},
      {"DuplicateNameInline",
       "events = [\n  { name = \"b\", event = \"x\" },\n  { name = \"c\", event = \"y\" },\n"
       "  { name = \"b\", event = \"z\" },\n]\n",
       4, 12, "events[3].name", "duplicate event name 'b' (first defined at line 2)"},
      {"MissingName", "[[events]]\nevent = \"x\"\n", 1, 1, "events[1].name",
       "missing required key 'name'"},
      {"MissingEventSecond",
       "[[events]]\nname = \"a\"\nevent = \"x\"\n\n  [[events]]\n  name = \"b\"\n", 5, 3,
       "events[2].event", "missing required key 'event'"},
      {"MissingEventInline", "events = [ { name = \"a\" } ]\n", 1, 12, "events[1].event",
       "missing required key 'event'"},
      {"NameWithSpace", "[[events]]\nname = \"a b\"\nevent = \"x\"\n", 2, 8, "events[1].name",
       "event name 'a b' contains ' '"},
      {"NameWithSlash", "[[events]]\nname = \"l1d/miss\"\nevent = \"x\"\n", 2, 8, "events[1].name",
       "contains '/'"},
      {"NameEmpty", "[[events]]\nname = \"\"\nevent = \"x\"\n", 2, 8, "events[1].name",
       "event name must not be empty"},
      {"EventEmpty", "[[events]]\nname = \"a\"\nevent = \"\"\n", 3, 9, "events[1].event",
       "event string must not be empty"},
      {"EventBlank", "[[events]]\nname = \"a\"\nevent = \"  \"\n", 3, 9, "events[1].event",
       "event string must not be empty"},
  };
}
INSTANTIATE_TEST_SUITE_P(Events, BadConfigTest, testing::ValuesIn(EventCases()), CaseName);

// One [[derived]] entry named "d" whose further lines start at line 3.
std::string DerivedEntry(const std::string& body) { return "[[derived]]\nname = \"d\"\n" + body; }

std::vector<BadCase> DerivedCases() {
  const std::string ipc = "numerator = \"instructions\"\ndenominator = \"cycles\"\n";
  const std::string busy =
      "numerator = \"proc_stat/busy_seconds\"\ndenominator = \"proc_stat/total_seconds\"\n";
  return {
      {"NotArray", "derived = 1\n", 1, 11, "derived",
       "expected an array of tables ([[derived]] entries), got an integer"},
      {"ElementNotTable", "derived = [1]\n", 1, 12, "derived[1]",
       "expected a table with 'name' and 'numerator', got an integer"},
      {"MissingName", "[[derived]]\n" + ipc, 1, 1, "derived[1].name",
       "missing required key 'name'"},
      {"NameUppercase", "[[derived]]\nname = \"IPC\"\n" + ipc, 2, 8, "derived[1].name",
       "derived metric name 'IPC' must match [a-z_][a-z0-9_]*"},
      {"NameLeadingDigit", "[[derived]]\nname = \"2x\"\n" + ipc, 2, 8, "derived[1].name",
       "must match [a-z_][a-z0-9_]*"},
      {"NameDash", "[[derived]]\nname = \"miss-ratio\"\n" + ipc, 2, 8, "derived[1].name",
       "must match"},
      {"NameEmpty", "[[derived]]\nname = \"\"\n" + ipc, 2, 8, "derived[1].name", "must match"},
      {"NameCollidingSuffix", "[[derived]]\nname = \"ipc_last\"\n" + ipc, 2, 8, "derived[1].name",
       "derived metric name 'ipc_last' must not end in '_last'"},
      {"NameTotal", "[[derived]]\nname = \"misses_total\"\n" + ipc, 2, 8, "derived[1].name",
       "must not end in '_total'"},
      {"DuplicateName", DerivedEntry(ipc) + DerivedEntry(ipc), 6, 8, "derived[2].name",
       "duplicate derived metric 'd' (first defined at line 2)"},
      {"UnknownKey", DerivedEntry(ipc + "scoop = \"cpu\"\n"), 5, 1, "derived[1].scoop",
       "(did you mean 'scope'?)"},
      {"MissingNumerator", DerivedEntry("denominator = \"cycles\"\n"), 1, 1, "derived[1].numerator",
       "missing required key 'numerator'"},
      {"MissingDenominator", DerivedEntry("numerator = \"cycles\"\n"), 1, 1,
       "derived[1].denominator",
       "missing required key 'denominator' (or set per_second = true for a rate)"},
      {"PerSecondWithDenominator", DerivedEntry(ipc + "per_second = true\n"), 4, 15,
       "derived[1].denominator", "per_second = true divides by the interval's duration"},
      {"PerSecondString", DerivedEntry("numerator = \"cycles\"\nper_second = \"yes\"\n"), 4, 14,
       "derived[1].per_second", "expected a boolean"},
      {"UnknownEventTypo", DerivedEntry("numerator = \"instrutions\"\ndenominator = \"cycles\"\n"),
       3, 13, "derived[1].numerator", "unknown event 'instrutions' (did you mean 'instructions'?)"},
      {"UnknownEventInList",
       DerivedEntry("numerator = \"cycles\"\ndenominator = [\"cycles\", \"bogus\"]\n"), 4, 26,
       "derived[1].denominator",
       "unknown event 'bogus' (configured events and statistics inputs: cycles, instructions,"},
      {"EventNotInCustomList",
       "[[events]]\nname = \"a\"\nevent = \"cpu-clock\"\n" + DerivedEntry(ipc), 6, 13,
       "derived[1].numerator", "unknown event 'instructions'"},
      {"UnknownStatInput",
       DerivedEntry("numerator = \"proc_stat/idle_seconds\"\ndenominator = "
                    "\"proc_stat/total_seconds\"\n"),
       3, 13, "derived[1].numerator", "unknown event 'proc_stat/idle_seconds'"},
      {"NumeratorInteger", DerivedEntry("numerator = 5\ndenominator = \"cycles\"\n"), 3, 13,
       "derived[1].numerator", "expected an event name or an array of event names, got an integer"},
      {"NumeratorEmptyList", DerivedEntry("numerator = []\ndenominator = \"cycles\"\n"), 3, 13,
       "derived[1].numerator", "empty list"},
      {"ListedTwice",
       DerivedEntry("numerator = [\"cycles\", \"cycles\"]\ndenominator = \"cycles\"\n"), 3, 24,
       "derived[1].numerator", "'cycles' is listed twice"},
      {"SumOfEventAndStat",
       DerivedEntry("numerator = [\"cycles\", \"proc_stat/busy_seconds\"]\nper_second = true\n"), 3,
       24, "derived[1].numerator", "cannot sum events and statistics inputs"},
      {"StatOverEvent",
       DerivedEntry("numerator = \"proc_stat/busy_seconds\"\ndenominator = \"cpu-clock\"\n"), 4, 15,
       "derived[1].denominator", "must both be events or both be statistics inputs"},
      {"ScopeUnknown", DerivedEntry(ipc + "scope = \"socket\"\n"), 5, 9, "derived[1].scope",
       "unknown scope 'socket' (expected host or cpu)"},
      {"BucketsNotArray", DerivedEntry(ipc + "buckets = 1\n"), 5, 11, "derived[1].buckets",
       "expected an array of numbers like [0.5, 1, 2], got an integer"},
      {"BucketsEmpty", DerivedEntry(ipc + "buckets = []\n"), 5, 11, "derived[1].buckets",
       "empty bucket list"},
      {"BucketString", DerivedEntry(ipc + "buckets = [\"1\"]\n"), 5, 12, "derived[1].buckets",
       "expected a number, got a string"},
      {"BucketNegative", DerivedEntry(ipc + "buckets = [-1]\n"), 5, 12, "derived[1].buckets",
       "bucket bounds must be positive and finite"},
      {"BucketZero", DerivedEntry(ipc + "buckets = [0.0, 1]\n"), 5, 12, "derived[1].buckets",
       "must be positive"},
      {"BucketInfinite", DerivedEntry(ipc + "buckets = [1, inf]\n"), 5, 15, "derived[1].buckets",
       "must be positive and finite"},
      {"BucketsDecreasing", DerivedEntry(ipc + "buckets = [1, 0.5]\n"), 5, 15, "derived[1].buckets",
       "bucket bounds must be strictly increasing"},
      {"BucketsRepeated", DerivedEntry(ipc + "buckets = [1, 2, 2]\n"), 5, 18, "derived[1].buckets",
       "strictly increasing"},
      {"WindowOnEvents", DerivedEntry(ipc + "window = \"1s\"\n"), 5, 10, "derived[1].window",
       "'window' applies to /proc/stat inputs (proc_stat/busy_seconds, ...); a metric of events "
       "takes one value per sampling interval"},
      {"WindowTooShort", DerivedEntry(busy + "window = \"10ms\"\n"), 5, 10, "derived[1].window",
       "window '10ms' is out of range [100ms, 1m]"},
      {"WindowNotDuration", DerivedEntry(busy + "window = \"soon\"\n"), 5, 10, "derived[1].window",
       "soon"},
      {"MaxSeriesZero", "[exporter]\nmax_series = 0\n", 2, 14, "exporter.max_series",
       "0 is out of range [1, 100000000]"},
      {"MaxSeriesString", "[exporter]\nmax_series = \"1k\"\n", 2, 14, "exporter.max_series",
       "expected an integer, got a string"},
  };
}
INSTANTIATE_TEST_SUITE_P(Derived, BadConfigTest, testing::ValuesIn(DerivedCases()), CaseName);

// ---------------------------------------------------------------------------
// Accepted inputs.

TEST(ParseConfigTest, EmptyFileIsDefault) {
  const Config config = Parse("");
  EXPECT_EQ(config, DefaultConfig());
  EXPECT_EQ(config.source, kSource);
}

TEST(ParseConfigTest, NoEventsUsesDefaultEvents) {
  const Config config = Parse("[sampling]\ninterval = \"250ms\"\n");
  EXPECT_EQ(config.sampling.interval, milliseconds(250));
  EXPECT_EQ(config.events, DefaultConfig().events);
}

TEST(ParseConfigTest, EveryKey) {
  const Config config = Parse(R"(
[exporter]
listen = "0.0.0.0:0"
metrics_path = "/pmu/metrics"
port_file = "/run/pmu.port"

[sampling]
interval = "1.5s"
cpus = "8,0-3"

[log]
level = "debug"

[[events]]
name = "ipc.instructions"
event = "INST_RETIRED:ANY_P:u"
group = "ipc"

  [[events]]
  name = "ipc:cycles"
  event = "cycles"
  group = "ipc"
)",
                              {0, 1, 2, 3, 4, 5, 6, 7, 8});
  EXPECT_EQ(config.exporter.listen, (ListenAddress{"0.0.0.0", 0, false}));
  EXPECT_EQ(config.exporter.metrics_path, "/pmu/metrics");
  EXPECT_EQ(config.exporter.port_file, "/run/pmu.port");
  EXPECT_EQ(config.sampling.interval, milliseconds(1500));
  EXPECT_FALSE(config.sampling.all_cpus);
  EXPECT_EQ(config.sampling.cpus, (std::vector<int>{0, 1, 2, 3, 8}));
  EXPECT_EQ(config.log.level, LogLevel::kDebug);
  ASSERT_EQ(config.events.size(), 2u);
  EXPECT_EQ(config.events[0].name, "ipc.instructions");
  EXPECT_EQ(config.events[0].event, "INST_RETIRED:ANY_P:u");
  EXPECT_EQ(config.events[0].group, "ipc");
  EXPECT_EQ(config.events[0].line, 14);
  EXPECT_EQ(config.events[0].column, 1);
  EXPECT_EQ(config.events[1].name, "ipc:cycles");
  EXPECT_EQ(config.events[1].line, 19);
  EXPECT_EQ(config.events[1].column, 3);
  EXPECT_EQ(Summary(config),
            "config OK: test.toml: 2 events in 1 group, cpus 0-3,8, interval 1500ms, "
            "listen 0.0.0.0:0/pmu/metrics");
}

TEST(ParseConfigTest, MinRunningRatio) {
  EXPECT_DOUBLE_EQ(Parse("").sampling.min_running_ratio, 0.5);
  EXPECT_DOUBLE_EQ(Parse("[sampling]\nmin_running_ratio = 0.9\n").sampling.min_running_ratio, 0.9);
  EXPECT_DOUBLE_EQ(Parse("[sampling]\nmin_running_ratio = 1\n").sampling.min_running_ratio, 1.0);
}

TEST(ParseConfigTest, WebAndLogTarget) {
  EXPECT_EQ(Parse("").web, WebConfig{});
  EXPECT_EQ(Parse("").log.target, LogTarget::kAuto);
  const Config config = Parse(
      "[log]\ntarget = \"journald\"\n[web]\ntls_cert_file = \"/c.pem\"\ntls_key_file = "
      "\"/k.pem\"\nmax_connections = 64\nmax_request_bytes = 4096\nrequest_timeout = "
      "\"2s\"\nidle_timeout = \"30s\"\n[[web.users]]\nname = \"prometheus\"\npassword_hash = "
      "\"" +
      kHash + "\"\n");
  EXPECT_EQ(config.log.target, LogTarget::kJournald);
  EXPECT_EQ(ToString(config.log.target), "journald");
  EXPECT_EQ(config.web.tls_cert_file, "/c.pem");
  EXPECT_EQ(config.web.tls_key_file, "/k.pem");
  EXPECT_EQ(config.web.max_connections, 64);
  EXPECT_EQ(config.web.max_request_bytes, 4096);
  EXPECT_EQ(config.web.request_timeout, std::chrono::seconds(2));
  EXPECT_EQ(config.web.idle_timeout, std::chrono::seconds(30));
  ASSERT_EQ(config.web.users.size(), 1u);
  EXPECT_EQ(config.web.users[0], (WebUser{"prometheus", kHash}));
  // bcrypt is accepted too.
  EXPECT_NO_THROW(
      Parse("[[web.users]]\nname = \"b\"\npassword_hash = "
            "\"$2b$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui\"\n"));
}

TEST(ParseConfigTest, StatsSwitches) {
  EXPECT_EQ(Parse("").stats, StatsConfig{});
  EXPECT_TRUE(StatsConfig{}.proc_stat && StatsConfig{}.softirqs && StatsConfig{}.schedstat &&
              StatsConfig{}.cpufreq);
  const Config config = Parse("[stats]\nschedstat = false\ncpufreq = false\n");
  EXPECT_TRUE(config.stats.proc_stat);
  EXPECT_TRUE(config.stats.softirqs);
  EXPECT_FALSE(config.stats.schedstat);
  EXPECT_FALSE(config.stats.cpufreq);
  EXPECT_NE(config, DefaultConfig());
  EXPECT_EQ(Parse("[stats]\nproc_stat = false\nsoftirqs = false\n").stats,
            (StatsConfig{false, false, true, true}));
}

TEST(ParseConfigTest, InlineEventsAndAllCpus) {
  const Config config = Parse(
      "events = [{ name = \"a\", event = \"cpu-clock\" }]\n[sampling]\ncpus = \"all\"\n", {0});
  EXPECT_TRUE(config.sampling.all_cpus);
  EXPECT_TRUE(config.sampling.cpus.empty());
  ASSERT_EQ(config.events.size(), 1u);
  EXPECT_EQ(config.events[0], (EventSpec{"a", "cpu-clock", ""}));
}

TEST(ParseConfigTest, CpusCheckedOnlyAgainstKnownHost) {
  EXPECT_EQ(Parse("[sampling]\ncpus = \"100\"\n").sampling.cpus, std::vector<int>{100});
  EXPECT_EQ(Parse("[sampling]\ncpus = \"1\"\n", {0, 1}).sampling.cpus, std::vector<int>{1});
}

struct ListenCase {
  const char* text;
  ListenAddress expected;
};

TEST(ParseConfigTest, ListenAddresses) {
  const ListenCase cases[] = {
      {"127.0.0.1:9842", {"127.0.0.1", 9842, false}},
      {"0.0.0.0:0", {"0.0.0.0", 0, false}},
      {"[::1]:9842", {"::1", 9842, true}},
      {"[::]:0", {"::", 0, true}},
      {"[fe80::1:2]:65535", {"fe80::1:2", 65535, true}},
      {"[::ffff:10.0.0.1]:80", {"::ffff:10.0.0.1", 80, true}},
  };
  for (const ListenCase& c : cases) {
    SCOPED_TRACE(c.text);
    const Config config = Parse("[exporter]\nlisten = \"" + std::string(c.text) + "\"\n");
    EXPECT_EQ(config.exporter.listen, c.expected);
    EXPECT_EQ(config.exporter.listen.ToString(), c.text);
    EXPECT_EQ(ParseListenAddress(c.text), c.expected);
  }
}

TEST(ParseConfigTest, LogLevels) {
  const std::pair<const char*, LogLevel> cases[] = {{"trace", LogLevel::kTrace},
                                                    {"debug", LogLevel::kDebug},
                                                    {"info", LogLevel::kInfo},
                                                    {"warn", LogLevel::kWarn},
                                                    {"error", LogLevel::kError}};
  for (const auto& [text, level] : cases) {
    EXPECT_EQ(Parse("[log]\nlevel = \"" + std::string(text) + "\"\n").log.level, level);
    EXPECT_EQ(ToString(level), text);
  }
}

TEST(ParseConfigTest, DerivedAbsentEmptyAndEveryKey) {
  EXPECT_FALSE(Parse("").derived.has_value());  // built-in derived metrics
  EXPECT_FALSE(DefaultConfig().derived.has_value());
  const Config none = Parse("derived = []\n");
  ASSERT_TRUE(none.derived.has_value());
  EXPECT_TRUE(none.derived->empty());
  EXPECT_NE(none, DefaultConfig());

  // Events listed after the derived metrics that use them are found.
  const Config config = Parse(R"(
[[derived]]
name = "ipc"
numerator = "inst"
denominator = "cyc"
buckets = [0.5, 1, 2.5]

[[derived]]
name = "_busy2"
numerator = "proc_stat/busy_seconds"
denominator = ["proc_stat/total_seconds"]
scope = "cpu"
window = "250ms"

[[derived]]
name = "faults_per_second"
numerator = ["minor", "major"]
per_second = true
scope = "host"

[[events]]
name = "inst"
event = "instructions"
[[events]]
name = "cyc"
event = "cycles"
[[events]]
name = "minor"
event = "minor-faults"
[[events]]
name = "major"
event = "major-faults"
)");
  ASSERT_TRUE(config.derived.has_value());
  ASSERT_EQ(config.derived->size(), 3u);
  const DerivedSpec& ipc = (*config.derived)[0];
  EXPECT_EQ(ipc.name, "ipc");
  EXPECT_EQ(ipc.numerator, std::vector<std::string>{"inst"});
  EXPECT_EQ(ipc.denominator, std::vector<std::string>{"cyc"});
  EXPECT_EQ(ipc.scope, DerivedScope::kHost);
  EXPECT_FALSE(ipc.per_second);
  EXPECT_EQ(ipc.buckets, (std::vector<double>{0.5, 1, 2.5}));
  EXPECT_EQ(ipc.line, 2);
  EXPECT_EQ(ipc.column, 1);
  const DerivedSpec& busy = (*config.derived)[1];
  EXPECT_EQ(busy.numerator, std::vector<std::string>{std::string(kProcStatBusySeconds)});
  EXPECT_EQ(busy.denominator, std::vector<std::string>{std::string(kProcStatTotalSeconds)});
  EXPECT_EQ(busy.scope, DerivedScope::kCpu);
  EXPECT_TRUE(busy.buckets.empty());
  EXPECT_EQ(busy.window, std::chrono::milliseconds(250));
  EXPECT_EQ(ipc.window, kDefaultStatWindow);
  const DerivedSpec& faults = (*config.derived)[2];
  EXPECT_TRUE(faults.per_second);
  EXPECT_EQ(faults.numerator, (std::vector<std::string>{"minor", "major"}));
  EXPECT_TRUE(faults.denominator.empty());
  EXPECT_EQ(ToString(faults.scope), "host");
  EXPECT_EQ(ToString(DerivedScope::kCpu), "cpu");

  // Equality covers the derived list but not its positions.
  Config moved = config;
  (*moved.derived)[0].line = 99;
  EXPECT_EQ(moved, config);
  (*moved.derived)[0].buckets.push_back(4);
  EXPECT_NE(moved, config);
}

TEST(ParseConfigTest, StatInputsAndMaxSeries) {
  EXPECT_TRUE(IsStatInput("proc_stat/busy_seconds"));
  EXPECT_TRUE(IsStatInput("proc_stat/total_seconds"));
  EXPECT_FALSE(IsStatInput("cycles"));
  EXPECT_FALSE(IsStatInput("proc_stat/"));
  EXPECT_EQ(Parse("").exporter.max_series, 50000);
  EXPECT_EQ(Parse("[exporter]\nmax_series = 1200\n").exporter.max_series, 1200);
  // The default event list serves as inputs when no [[events]] are given.
  EXPECT_NO_THROW(
      Parse("[[derived]]\nname = \"cs\"\nnumerator = \"context-switches\"\n"
            "per_second = true\n"));
}

// ---------------------------------------------------------------------------
// Defaults, files, summary.

TEST(DefaultConfigTest, Contents) {
  const Config config = DefaultConfig();
  EXPECT_EQ(config.source, "<built-in default>");
  EXPECT_EQ(config.exporter.listen.ToString(), "127.0.0.1:9842");
  EXPECT_EQ(config.exporter.metrics_path, "/metrics");
  EXPECT_EQ(config.exporter.port_file, "");
  EXPECT_EQ(config.sampling.interval, std::chrono::milliseconds(100));
  EXPECT_TRUE(config.sampling.all_cpus);
  EXPECT_EQ(config.log.level, LogLevel::kInfo);
  const std::vector<std::string> expected = {"cycles",         "instructions", "cache-misses",
                                             "branch-misses",  "cpu-clock",    "context-switches",
                                             "cpu-migrations", "page-faults"};
  ASSERT_EQ(config.events.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(config.events[i].name, expected[i]);
    EXPECT_EQ(config.events[i].event, expected[i]);
    EXPECT_EQ(config.events[i].group, "");
    EXPECT_EQ(config.events[i].line, 0);
  }
  EXPECT_EQ(Summary(config),
            "config OK: <built-in default>: 8 events in 8 groups, cpus all, interval 100ms, "
            "listen 127.0.0.1:9842/metrics");
}

TEST(LoadConfigFileTest, PackagedConfigIsTheDefault) {
  const std::string path = std::string(PMU_SOURCE_DIR) + "/packaging/config.toml";
  const Config config = LoadConfigFile(path, ParseContext{});
  EXPECT_EQ(config, DefaultConfig());
  EXPECT_EQ(config.source, path);
  ASSERT_FALSE(config.events.empty());
  EXPECT_GT(config.events[0].line, 0);  // positions come from the file
}

TEST(LoadConfigFileTest, MissingFile) {
  const std::string path = "/nonexistent/pmu-exporter/config.toml";
  try {
    LoadConfigFile(path, ParseContext{});
    FAIL() << "no error for a missing file";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.file(), path);
    EXPECT_EQ(e.line(), 0);
    EXPECT_EQ(e.column(), 0);
    EXPECT_EQ(e.key(), "");
    EXPECT_EQ(e.message(), "cannot read config file: " + std::string(std::strerror(ENOENT)));
    EXPECT_EQ(std::string(e.what()), path + ": " + e.message());
  }
}

TEST(LoadConfigFileTest, DirectoryIsUnreadable) {
  try {
    LoadConfigFile("/", ParseContext{});
    FAIL() << "no error for a directory";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.line(), 0);
    EXPECT_EQ(e.message(), "cannot read config file: " + std::string(std::strerror(EISDIR)));
  }
}

// Item 5 of issue 11: files that hung or exhausted memory are refused at once.
TEST(LoadConfigFileTest, FifoIsRefusedWithoutBlocking) {
  char dir_template[] = "/tmp/pmu-config-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string fifo = std::string(dir_template) + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  const auto start = std::chrono::steady_clock::now();
  try {
    LoadConfigFile(fifo, ParseContext{});
    ADD_FAILURE() << "a FIFO was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(e.message().find("not a regular file"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(1));
  unlink(fifo.c_str());
  rmdir(dir_template);
}

TEST(LoadConfigFileTest, DeviceIsRefusedWithoutReading) {
  try {
    LoadConfigFile("/dev/zero", ParseContext{});
    FAIL() << "/dev/zero was accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.line(), 0);
    EXPECT_NE(e.message().find("not a regular file"), std::string::npos) << e.what();
  }
}

TEST(LoadConfigFileTest, FileOverTheSizeLimitIsRefused) {
  char path[] = "/tmp/pmu-config-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(kMaxConfigBytes) + 1), 0);
  close(fd);
  try {
    LoadConfigFile(path, ParseContext{});
    ADD_FAILURE() << "an oversized file was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(e.message().find("larger than the limit of " + std::to_string(kMaxConfigBytes)),
              std::string::npos)
        << e.what();
  }
  unlink(path);
}

// A 20,000-character unknown derived input once took 3.2 GB and 20 s in the
// "did you mean" suggestion.
TEST(SuggestionCostTest, LongUnknownNamesAreCheap) {
  const std::string long_name(20000, 'x');
  std::string toml = "[[events]]\nname = \"" + std::string(19999, 'x') +
                     "y\"\nevent = \"cpu-clock\"\n[[derived]]\nname = \"d\"\nnumerator = \"" +
                     long_name + "\"\nper_second = true\n";
  // The quadratic suggestion took 3.2 GB (and 20 s) for this file: bound
  // the memory it may add, which does not depend on how fast this host (or
  // a sanitizer build) runs.
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  try {
    Parse(toml);
    FAIL() << "unknown input accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "derived[1].numerator");
    EXPECT_NE(e.message().find("did you mean"), std::string::npos);
    EXPECT_LT(e.message().size(), 1000u) << "the message repeats the whole name";
  }
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 64 * 1024) << "KiB of peak memory added";
  // An unknown key of the same length.
  EXPECT_THROW(Parse("[log]\n" + long_name + " = 1\n"), ConfigError);
}

std::vector<BadCase> EncodingCases() {
  return {
      // Debian's toml++ 3.3.0 reaches TOML_UNREACHABLE on this one.
      {"NonAsciiBareKey", "a\xc8\x99= 1\n", 1, 2, "", "non-ASCII character outside a string"},
      {"NonAsciiAfterTable", "[log]\nlevel\xc3\xa9 = \"info\"\n", 2, 6, "", "non-ASCII"},
      {"TruncatedSequence", "[log]\nlevel = \"\xc3\"\n", 2, 10, "", "invalid UTF-8 (byte 0xc3)"},
      {"Overlong", "# \xc0\xaf\n", 1, 3, "", "invalid UTF-8 (byte 0xc0)"},
      {"Surrogate", "# \xed\xa0\x80\n", 1, 3, "", "invalid UTF-8 (byte 0xed)"},
      {"AboveUnicode", "# ok \xc3\xa9 \xf4\x90\x80\x80\n", 1, 8, "", "invalid UTF-8 (byte 0xf4)"},
      {"LoneContinuation", "\n\x80", 2, 1, "", "invalid UTF-8"},
  };
}
INSTANTIATE_TEST_SUITE_P(Encoding, BadConfigTest, testing::ValuesIn(EncodingCases()), CaseName);

TEST(EncodingTest, NonAsciiInsideStringsAndCommentsIsAccepted) {
  const Config config = Parse(
      "# caf\xc3\xa9\n[[events]]\nname = \"a\"\nevent = \"cpu-clock\"\ngroup = "
      "\"gr\xc3\xbc\\\"ppe \xe2\x82\xac\"\n[exporter]\nport_file = '/tmp/\xc3\xa9'\n"
      "[log] # \xf0\x9f\x98\x80\nlevel = \"\"\"info\"\"\"\n");
  EXPECT_EQ(config.events.at(0).group, "gr\xc3\xbc\"ppe \xe2\x82\xac");
  EXPECT_EQ(config.exporter.port_file, "/tmp/\xc3\xa9");
  EXPECT_EQ(FindInvalidUtf8("\xf4\x8f\xbf\xbf \xe0\xa0\x80"), std::string_view::npos);
}

TEST(SummaryTest, CountsGroups) {
  Config config = DefaultConfig();
  config.source = "x.toml";
  config.events = {{"a", "cycles", "g"},
                   {"b", "instructions", "g"},
                   {"c", "cpu-clock", ""},
                   {"d", "page-faults", "h"}};
  config.sampling.all_cpus = false;
  config.sampling.cpus = {0, 2, 3};
  config.sampling.interval = milliseconds(250);
  config.exporter.listen = {"::1", 0, true};
  EXPECT_EQ(Summary(config),
            "config OK: x.toml: 4 events in 3 groups, cpus 0,2-3, interval 250ms, "
            "listen [::1]:0/metrics");
}

TEST(ConfigErrorTest, WhatFormat) {
  EXPECT_STREQ(ConfigError("f.toml", 3, 7, "log.level", "bad").what(),
               "f.toml:3:7: log.level: bad");
  EXPECT_STREQ(ConfigError("f.toml", 3, 7, "", "bad").what(), "f.toml:3:7: bad");
  EXPECT_STREQ(ConfigError("f.toml", 0, 0, "", "bad").what(), "f.toml: bad");
}

// ---------------------------------------------------------------------------
// Value parsers.

struct DurationCase {
  const char* text;
  nanoseconds value;
  const char* canonical;  // FormatDuration(value)
};

TEST(DurationTest, ParseAndFormatRoundTrip) {
  const DurationCase cases[] = {
      {"100ns", nanoseconds(100), "100ns"},
      {"500us", microseconds(500), "500us"},
      {"500\u00b5s", microseconds(500), "500us"},
      {"10ms", milliseconds(10), "10ms"},
      {"250ms", milliseconds(250), "250ms"},
      {"1s", seconds(1), "1s"},
      {"1.5s", milliseconds(1500), "1500ms"},
      {"0.5ms", microseconds(500), "500us"},
      {"1.250s", milliseconds(1250), "1250ms"},
      {"90s", seconds(90), "90s"},
      {"120s", minutes(2), "2m"},
      {"1m", minutes(1), "1m"},
      {"1.5m", seconds(90), "90s"},
      {"2h", hours(2), "2h"},
      {"0.0000000000025h", nanoseconds(9), "9ns"},
      {"1000000000ns", seconds(1), "1s"},
  };
  for (const DurationCase& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(ParseDuration(c.text), c.value);
    EXPECT_EQ(FormatDuration(c.value), c.canonical);
    EXPECT_EQ(ParseDuration(FormatDuration(c.value)), c.value);
  }
}

TEST(DurationTest, Extremes) {
  const nanoseconds max(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(ParseDuration(FormatDuration(max)), max);
  EXPECT_THROW(ParseDuration("9223372036854775808ns"), std::invalid_argument);
  EXPECT_EQ(FormatDuration(nanoseconds(0)), "0s");
  EXPECT_EQ(FormatDuration(-seconds(3)), "-3s");
}

struct CpuListCase {
  const char* text;
  std::vector<int> cpus;
  const char* canonical;  // FormatCpuList(cpus)
};

TEST(CpuListTest, ParseAndFormatRoundTrip) {
  const CpuListCase cases[] = {
      {"0", {0}, "0"},
      {"0-1", {0, 1}, "0-1"},
      {"0-3,8", {0, 1, 2, 3, 8}, "0-3,8"},
      {"8,0-3", {0, 1, 2, 3, 8}, "0-3,8"},
      {"1,1,0-1", {0, 1}, "0-1"},
      {"0-1, 4 ,5", {0, 1, 4, 5}, "0-1,4-5"},
      {"3-3", {3}, "3"},
      {"0,2,4-6,9", {0, 2, 4, 5, 6, 9}, "0,2,4-6,9"},
      {"65535", {65535}, "65535"},
  };
  for (const CpuListCase& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(ParseCpuList(c.text), c.cpus);
    EXPECT_EQ(FormatCpuList(c.cpus), c.canonical);
    EXPECT_EQ(ParseCpuList(FormatCpuList(c.cpus)), c.cpus);
  }
  EXPECT_EQ(FormatCpuList({}), "");
  EXPECT_EQ(FormatCpuList({5, 4, 4}), "4-5");
}

}  // namespace
}  // namespace pmu::config
