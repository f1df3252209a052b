#include "pmu/collectors/event_syntax.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>

namespace pmu::collectors {
namespace {

using Kind = EventSpecError::Kind;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

[[noreturn]] void Syntax(std::string message) { throw EventSpecError(Kind::kSyntax, message); }

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
}
bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

int ParseBit(std::string_view s, std::string_view whole) {
  int bit = -1;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), bit);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || bit < 0 || bit > 63) {
    Syntax("format " + Quote(whole) + ": bit " + Quote(s) + " is not a number in 0-63");
  }
  return bit;
}

// "0x1f", "31", "0"; the whole string.
uint64_t ParseValue(std::string_view s, std::string_view term) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
  if (ec == std::errc::result_out_of_range) {
    throw EventSpecError(Kind::kValueTooWide,
                         "term " + Quote(term) + ": value does not fit in 64 bits");
  }
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
    Syntax("term " + Quote(term) + ": value " + Quote(s) + " is not a number (decimal or 0x hex)");
  }
  return value;
}

Modifiers ParseModifiers(std::string_view s, std::string_view whole) {
  Modifiers m;
  for (char c : s) {
    switch (c) {
      case 'u':
        m.any = m.user = true;
        break;
      case 'k':
        m.any = m.kernel = true;
        break;
      case 'h':
        m.any = m.hv = true;
        break;
      case 'G':  // guest/host and precision: meaningless for counting; accepted
      case 'H':
      case 'p':
      case 'P':
        break;
      default:
        Syntax("event " + Quote(whole) + ": unknown modifier '" + std::string(1, c) +
               "' (known: u, k, h, G, H, p)");
    }
  }
  return m;
}

bool AllModifierChars(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::string_view("ukhGHpP").find(c) != std::string_view::npos;
  });
}

}  // namespace

int FormatField::Width() const {
  int w = 0;
  for (auto [lo, hi] : ranges) w += hi - lo + 1;
  return w;
}

FormatField ParseFormatSpec(std::string_view text) {
  const std::string_view whole = Trim(text);
  const size_t colon = whole.find(':');
  if (colon == std::string_view::npos) {
    Syntax("format " + Quote(whole) + ": expected config[12]:BITS");
  }
  FormatField field;
  const std::string_view word = whole.substr(0, colon);
  if (word == "config") {
    field.word = 0;
  } else if (word == "config1") {
    field.word = 1;
  } else if (word == "config2") {
    field.word = 2;
  } else {
    Syntax("format " + Quote(whole) + ": unknown attr word " + Quote(word) +
           " (config, config1, config2)");
  }
  std::string_view bits = whole.substr(colon + 1);
  if (bits.empty()) Syntax("format " + Quote(whole) + ": no bits");
  while (!bits.empty()) {
    const size_t comma = bits.find(',');
    const std::string_view item = bits.substr(0, comma);
    bits = comma == std::string_view::npos ? std::string_view() : bits.substr(comma + 1);
    if (comma != std::string_view::npos && bits.empty()) {
      Syntax("format " + Quote(whole) + ": trailing ','");
    }
    const size_t dash = item.find('-');
    int lo = ParseBit(item.substr(0, dash), whole);
    int hi = dash == std::string_view::npos ? lo : ParseBit(item.substr(dash + 1), whole);
    if (hi < lo) Syntax("format " + Quote(whole) + ": reversed range " + Quote(item));
    for (auto [l, h] : field.ranges) {
      if (lo <= h && l <= hi) Syntax("format " + Quote(whole) + ": overlapping bits");
    }
    field.ranges.emplace_back(lo, hi);
  }
  return field;
}

std::vector<EventTerm> ParseTermList(std::string_view text) {
  const std::string_view whole = Trim(text);
  std::vector<EventTerm> terms;
  std::string_view rest = whole;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = Trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (item.empty()) Syntax("term list " + Quote(whole) + ": empty term");
    const size_t eq = item.find('=');
    EventTerm term;
    term.name = std::string(Trim(item.substr(0, eq)));
    if (term.name.empty() || !std::all_of(term.name.begin(), term.name.end(), IsNameChar)) {
      Syntax("term list " + Quote(whole) + ": bad term name " + Quote(term.name));
    }
    if (eq != std::string_view::npos) {
      const std::string_view value = Trim(item.substr(eq + 1));
      if (value == "?") {
        term.user_supplied = true;
        term.value = 0;
      } else {
        term.value = ParseValue(value, term.name);
      }
    } else {
      term.bare = true;
    }
    terms.push_back(std::move(term));
  }
  return terms;
}

ParsedEvent ParseEventString(std::string_view text) {
  const std::string_view s = Trim(text);
  ParsedEvent out;
  if (s.empty()) Syntax("empty event string");
  if (const size_t slash = s.find('/'); slash != std::string_view::npos) {
    out.kind = ParsedEvent::Kind::kSysfs;
    out.pmu = std::string(s.substr(0, slash));
    if (out.pmu.empty() || !std::all_of(out.pmu.begin(), out.pmu.end(), IsNameChar)) {
      Syntax("event " + Quote(s) + ": bad PMU name " + Quote(out.pmu) + " (expected pmu/terms/)");
    }
    const size_t close = s.find('/', slash + 1);
    if (close == std::string_view::npos) {
      Syntax("event " + Quote(s) + ": missing closing '/' (expected pmu/terms/)");
    }
    out.terms = ParseTermList(s.substr(slash + 1, close - slash - 1));
    std::string_view mods = s.substr(close + 1);
    if (!mods.empty() && mods.front() == ':') mods.remove_prefix(1);
    out.modifiers = ParseModifiers(mods, s);
    return out;
  }
  const size_t colon = s.find(':');
  if (s.size() > 1 && s[0] == 'r' &&
      std::all_of(s.begin() + 1, s.begin() + static_cast<long>(std::min(colon, s.size())),
                  [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
    const std::string_view hex = s.substr(1, colon == std::string_view::npos ? colon : colon - 1);
    if (!hex.empty()) {
      out.kind = ParsedEvent::Kind::kRaw;
      if (hex.size() > 16) {
        throw EventSpecError(Kind::kValueTooWide,
                             "raw event " + Quote(s) + ": more than 64 bits of config");
      }
      out.raw = ParseValue("0x" + std::string(hex), "r");
      if (colon != std::string_view::npos) out.modifiers = ParseModifiers(s.substr(colon + 1), s);
      return out;
    }
  }
  if (colon != std::string_view::npos && colon > 0 &&
      s.find(':', colon + 1) == std::string_view::npos) {
    const std::string_view sub = s.substr(0, colon);
    const std::string_view ev = s.substr(colon + 1);
    if (std::all_of(sub.begin(), sub.end(), IsIdentChar) && !ev.empty() &&
        std::all_of(ev.begin(), ev.end(), IsIdentChar) && !AllModifierChars(ev)) {
      out.kind = ParsedEvent::Kind::kTracepoint;
      out.subsystem = std::string(sub);
      out.event = std::string(ev);
      return out;
    }
  }
  out.kind = ParsedEvent::Kind::kOther;
  return out;
}

EncodedConfig EncodeTerms(const std::vector<EventTerm>& terms,
                          const std::map<std::string, FormatField>& formats, std::string_view pmu) {
  EncodedConfig out;
  for (const EventTerm& term : terms) {
    if (term.user_supplied) {
      throw EventSpecError(Kind::kUnknownTerm, "PMU " + Quote(pmu) + ": term " + Quote(term.name) +
                                                   " needs a value (" + term.name + "=N)");
    }
    if (term.name == "config" || term.name == "config1" || term.name == "config2") {
      if (formats.count(term.name) == 0) {
        out.config[term.name == "config" ? 0 : term.name == "config1" ? 1 : 2] = term.value;
        continue;
      }
    }
    const auto it = formats.find(term.name);
    if (it == formats.end()) {
      std::vector<std::string> known;
      for (const auto& [name, field] : formats) known.push_back(name);
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      throw EventSpecError(Kind::kUnknownTerm,
                           "PMU " + Quote(pmu) + " has no term " + Quote(term.name) +
                               " (its terms: " + (list.empty() ? "none" : list) + ")",
                           NearestNames(term.name, known));
    }
    const FormatField& field = it->second;
    const int width = field.Width();
    if (width < 64 && (term.value >> width) != 0) {
      throw EventSpecError(
          Kind::kValueTooWide, "PMU " + Quote(pmu) + ": " + term.name + "=0x" +
                                   [&] {
                                     char buf[20];
                                     auto r = std::to_chars(buf, buf + sizeof(buf), term.value, 16);
                                     return std::string(buf, r.ptr);
                                   }() +
                                   " does not fit its " + std::to_string(width) + "-bit field");
    }
    // Value bits go to the field's bits in ascending bit order, as perf does.
    std::vector<std::pair<int, int>> ranges = field.ranges;
    std::sort(ranges.begin(), ranges.end());
    uint64_t& word = out.config[field.word];
    int src = 0;
    for (auto [lo, hi] : ranges) {
      for (int bit = lo; bit <= hi; ++bit, ++src) {
        const uint64_t mask = uint64_t{1} << bit;
        word = (term.value >> src) & 1 ? (word | mask) : (word & ~mask);
      }
    }
  }
  return out;
}

double ParseScale(std::string_view text) {
  const std::string s(Trim(text));
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v) || v <= 0) {
    Syntax("scale " + Quote(s) + " is not a positive number");
  }
  return v;
}

bool ContainsIgnoreCase(std::string_view haystack, std::string_view needle) {
  if (needle.empty()) return true;
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                        [](char a, char b) {
                          return std::tolower(static_cast<unsigned char>(a)) ==
                                 std::tolower(static_cast<unsigned char>(b));
                        });
  return it != haystack.end();
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (same ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::vector<std::string> NearestNames(std::string_view name, const std::vector<std::string>& known,
                                      size_t limit) {
  const size_t max_distance = std::max<size_t>(2, name.size() / 3);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const std::string& k : known) {
    // Cheap bound first: lengths alone.
    const size_t gap = k.size() > name.size() ? k.size() - name.size() : name.size() - k.size();
    if (gap > max_distance) continue;
    const size_t d = EditDistance(name, k);
    if (d <= max_distance) scored.emplace_back(d, k);
  }
  std::sort(scored.begin(), scored.end());
  scored.erase(std::unique(scored.begin(), scored.end()), scored.end());
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && out.size() < limit; ++i) out.push_back(scored[i].second);
  return out;
}

}  // namespace pmu::collectors
