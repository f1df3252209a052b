// The HTTP request-head parser and the header-value parsers behind it.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pmu/web/http_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  namespace d = pmu::web::detail;
  for (size_t limit : {size_t{1024}, size_t{8192}}) {
    const d::ParseResult r = d::ParseRequest(text, limit);
    if (r.status == d::ParseStatus::kComplete) {
      // Invariants the server relies on.
      if (r.consumed == 0 || r.consumed > text.size() || r.consumed > limit) __builtin_trap();
      if (r.request.method != "GET" && r.request.method != "HEAD") __builtin_trap();
      if (r.request.path.empty()) __builtin_trap();
    }
    if (r.status == d::ParseStatus::kError && r.error_status == 0) __builtin_trap();
  }
  d::AcceptsGzip(text);
  d::DecodeBase64(text);
  d::ParseBasicAuthorization(text);
  return 0;
}
