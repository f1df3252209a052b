#include "pmu/web/http_parser.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace pmu::web::detail {
namespace {

char ToLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToLower(a[i]) != ToLower(b[i])) return false;
  }
  return true;
}

// RFC 9110 tchar.
bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

bool IsControl(char c) {
  auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls `fn` for each trimmed, non-empty element of a comma-separated list.
template <typename Fn>
void ForEachListElement(std::string_view list, Fn fn) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view element = TrimOws(list.substr(0, comma));
    if (!element.empty()) fn(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

// A qvalue ("1", "0.5", "0.000"): positive when any digit is non-zero.
// Anything but digits and one dot counts as q=0.
bool QValueIsPositive(std::string_view q) {
  bool positive = false;
  int dots = 0;
  for (char c : q) {
    if (c == '.') {
      if (++dots > 1) return false;
    } else if (c >= '0' && c <= '9') {
      positive = positive || c != '0';
    } else {
      return false;
    }
  }
  return positive;
}

ParseResult Error(int status) {
  ParseResult result;
  result.status = ParseStatus::kError;
  result.error_status = status;
  return result;
}

// Splits "METHOD SP target SP HTTP/x.y" into `request`; returns 0 or the
// error status.
int ParseRequestLine(std::string_view line, ParseResult& result) {
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return 400;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return 400;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method) || target.empty()) return 400;
  for (char c : target) {
    if (IsControl(c)) return 400;
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return 400;
  }
  if (version[5] != '1') return 505;
  result.http10 = version[7] == '0';

  // Absolute form (RFC 9112 3.2.2): keep only the path and query.
  std::string origin(target);
  if (size_t scheme_end = target.find("://");
      scheme_end != std::string_view::npos && target.front() != '/') {
    if (!IsToken(target.substr(0, scheme_end))) return 400;
    std::string_view rest = target.substr(scheme_end + 3);
    size_t slash = rest.find_first_of("/?");
    origin = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    if (origin.front() == '?') origin.insert(0, "/");
  }
  result.request.method = std::string(method);
  origin.erase(std::min(origin.find('#'), origin.size()));
  size_t question = origin.find('?');
  result.request.path = origin.substr(0, question);
  if (question != std::string::npos) result.request.query = origin.substr(question + 1);
  // "*" (OPTIONS) and authority form (CONNECT) only make sense for methods
  // that are refused anyway; leave them to the 405 below.
  if (result.request.path.empty() || result.request.path.front() != '/') {
    return (method == "GET" || method == "HEAD") ? 400 : 0;
  }
  return 0;
}

}  // namespace

ParseResult ParseRequest(std::string_view data, size_t max_request_bytes) {
  // Find the end of the head; accept CRLF and bare LF line ends.
  std::vector<std::string_view> lines;
  size_t pos = 0;
  size_t head_end = std::string_view::npos;
  bool started = false;
  while (pos < data.size()) {
    size_t nl = data.find('\n', pos);
    if (nl == std::string_view::npos) break;
    std::string_view line = data.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = nl + 1;
    if (line.empty()) {
      if (!started) continue;  // RFC 9112 2.2: ignore empty lines before the request line
      head_end = pos;
      break;
    }
    started = true;
    lines.push_back(line);
  }
  if (head_end == std::string_view::npos) {
    return data.size() > max_request_bytes ? Error(431) : ParseResult{};
  }
  if (head_end > max_request_bytes) return Error(431);

  ParseResult result;
  if (int status = ParseRequestLine(lines.front(), result); status != 0) return Error(status);

  bool has_body = false;
  bool wants_close = false;
  bool wants_keep_alive = false;
  std::string accept_encoding;
  std::optional<std::string_view> content_length;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') return Error(400);  // obs-fold
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) return Error(400);
    std::string_view value = TrimOws(line.substr(colon + 1));
    for (char c : value) {
      if (IsControl(c) && c != '\t') return Error(400);
    }
    std::string name(line.substr(0, colon));
    for (char& c : name) c = ToLower(c);

    if (name == "content-length") {
      if (value.empty() || value.find_first_not_of("0123456789") != std::string_view::npos ||
          (content_length && *content_length != value)) {
        return Error(400);
      }
      content_length = value;
      has_body = has_body || value.find_first_not_of('0') != std::string_view::npos;
    } else if (name == "transfer-encoding") {
      has_body = true;
    } else if (name == "connection") {
      ForEachListElement(value, [&](std::string_view token) {
        wants_close = wants_close || EqualsIgnoreCase(token, "close");
        wants_keep_alive = wants_keep_alive || EqualsIgnoreCase(token, "keep-alive");
      });
    } else if (name == "accept-encoding") {
      if (!accept_encoding.empty()) accept_encoding += ',';
      accept_encoding.append(value);
    }
    result.request.headers.emplace_back(std::move(name), std::string(value));
  }

  result.consumed = head_end;
  result.keep_alive = !wants_close && (!result.http10 || wants_keep_alive);
  result.accepts_gzip = AcceptsGzip(accept_encoding);
  const std::string& method = result.request.method;
  if (method != "GET" && method != "HEAD") {
    result.status = ParseStatus::kError;
    result.error_status = 405;
    result.error_closes = has_body;  // an unread body would be taken for the next request
    return result;
  }
  if (has_body) return Error(413);
  result.status = ParseStatus::kComplete;
  return result;
}

bool AcceptsGzip(std::string_view accept_encoding) {
  std::optional<bool> gzip;
  std::optional<bool> any;
  ForEachListElement(accept_encoding, [&](std::string_view element) {
    size_t semicolon = element.find(';');
    std::string_view coding = TrimOws(element.substr(0, semicolon));
    bool positive = true;
    while (semicolon != std::string_view::npos) {
      element.remove_prefix(semicolon + 1);
      semicolon = element.find(';');
      std::string_view param = TrimOws(element.substr(0, semicolon));
      if (param.size() >= 2 && ToLower(param[0]) == 'q' && param[1] == '=') {
        positive = QValueIsPositive(param.substr(2));
      }
    }
    if (EqualsIgnoreCase(coding, "gzip") || EqualsIgnoreCase(coding, "x-gzip")) {
      gzip = positive;
    } else if (coding == "*") {
      any = positive;
    }
  });
  return gzip.value_or(any.value_or(false));
}

std::optional<std::string> DecodeBase64(std::string_view text) {
  static constexpr std::array<int8_t, 256> kValues = [] {
    std::array<int8_t, 256> values{};
    values.fill(-1);
    constexpr std::string_view kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < kAlphabet.size(); ++i) {
      values[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
    }
    return values;
  }();

  size_t padding = 0;
  while (padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  if (padding > 2 || (padding > 0 && text.size() % 4 != 0)) return std::nullopt;
  std::string_view digits = text.substr(0, text.size() - padding);
  if (digits.size() % 4 == 1) return std::nullopt;

  std::string out;
  out.reserve(digits.size() / 4 * 3 + 2);
  uint32_t bits = 0;
  int nbits = 0;
  for (char c : digits) {
    int8_t v = kValues[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<uint32_t>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<char>((bits >> nbits) & 0xffu));
    }
  }
  return out;
}

std::optional<BasicCredentials> ParseBasicAuthorization(std::string_view value) {
  value = TrimOws(value);
  size_t space = value.find(' ');
  if (space == std::string_view::npos || !EqualsIgnoreCase(value.substr(0, space), "basic")) {
    return std::nullopt;
  }
  std::string_view token = TrimOws(value.substr(space + 1));
  std::optional<std::string> decoded = DecodeBase64(token);
  if (!decoded || decoded->empty()) return std::nullopt;
  // RFC 7617: neither part contains control characters; a NUL would also
  // cut the password short in crypt(3).
  for (char c : *decoded) {
    if (IsControl(c)) return std::nullopt;
  }
  size_t colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  return BasicCredentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
}

const char* StatusReason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace pmu::web::detail
