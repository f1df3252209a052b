#include "pmu/metrics/rendered.h"

namespace pmu::metrics {

void RenderTextInto(const ExportSnapshot& snapshot, std::string& out, size_t size_hint) {
  out.clear();
  // A little room over the last size: counters grow by a digit now and then.
  if (size_hint > 0) out.reserve(size_hint + size_hint / 16);
  TextWriter writer(out);
  StandardRegistry().Write(snapshot, writer);
  for (const auto& source : snapshot.extra) source->Write(snapshot, writer);
}

std::shared_ptr<const std::string> Rendered::Text() {
  std::call_once(text_once_, [this] {
    auto text = std::make_shared<std::string>();
    if (snapshot_) RenderTextInto(*snapshot_, *text, size_hint_);
    text_ = std::move(text);
  });
  return text_;
}

std::shared_ptr<const std::string> Rendered::Compressed(const Compressor& compress) {
  std::call_once(compressed_once_, [this, &compress] {
    std::string out = compress(*Text());
    if (!out.empty()) compressed_ = std::make_shared<const std::string>(std::move(out));
  });
  return compressed_;
}

}  // namespace pmu::metrics
