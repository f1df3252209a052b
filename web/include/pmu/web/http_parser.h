// HTTP/1.1 request-head parsing for HttpServer, kept free of sockets so it
// can be unit-tested on byte strings.
//
// Scope: the server answers GET and HEAD only and refuses request bodies, so
// the parser reads the request line and the header fields and never a body.
// It is strict where laxness would let a request be read two ways (a space
// before a header colon, obs-fold, a body length it cannot skip) and lenient
// where it costs nothing (empty lines before the request line, a missing Host).
// The target is not percent-decoded.
//
// Thread safety: pure functions; call from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "pmu/web/http_server.h"

namespace pmu::web::detail {

enum class ParseStatus {
  kIncomplete,  // no blank line yet and still within the size limit: read more
  kComplete,    // `request` is valid; `consumed` bytes belong to it
  kError,       // answer `error_status`; `consumed` is meaningful only when
                // `error_closes` is false (the request may be skipped)
};

struct ParseResult {
  ParseStatus status = ParseStatus::kIncomplete;
  size_t consumed = 0;
  HttpRequest request;      // filled for kComplete (and for a 405)
  bool keep_alive = false;  // HTTP/1.1 unless "close"; HTTP/1.0 only with "keep-alive"
  bool http10 = false;      // the request said HTTP/1.0
  bool accepts_gzip = false;
  int error_status = 0;      // 400, 405, 413, 431 or 505
  bool error_closes = true;  // false only for a 405 without a body
};

// Parses the request at the start of `data`. A head (request line, header
// fields and the blank line) longer than `max_request_bytes` is a 431 even
// when it is not complete yet.
ParseResult ParseRequest(std::string_view data, size_t max_request_bytes);

// True when an Accept-Encoding value admits gzip: "gzip" or "x-gzip" with
// q > 0, or "*" with q > 0 when gzip is not listed. Case-insensitive.
bool AcceptsGzip(std::string_view accept_encoding);

// Standard base64 (RFC 4648 section 4); padding optional; whitespace and any
// other character are errors.
std::optional<std::string> DecodeBase64(std::string_view text);

struct BasicCredentials {
  std::string user;
  std::string password;
};
// Parses an Authorization value "Basic <base64 of user:password>"; nullopt
// for another scheme or a malformed token.
std::optional<BasicCredentials> ParseBasicAuthorization(std::string_view value);

// "OK", "Not Found", ...; "Unknown" for codes the server does not use.
const char* StatusReason(int status);

}  // namespace pmu::web::detail
