// Rendered: the exposition of one ExportSnapshot, produced once and shared by
// every request until the next snapshot.
//
// The text is rendered on the first Text() call (lazily, by whichever thread
// asks first: the serving thread on the first request after a snapshot) and
// a compressed copy on the first Compressed() call; both are immutable
// strings handed out by shared_ptr, so serving one needs no copy and no lock
// beyond the once-flag. The buffer is reserved from `size_hint` (the previous
// rendering's size) so the text is written without regrowing.
//
// Thread safety: every member from any thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "pmu/metrics/family_source.h"

namespace pmu::metrics {

class Rendered {
 public:
  using Compressor = std::function<std::string(const std::string&)>;

  explicit Rendered(std::shared_ptr<const ExportSnapshot> snapshot, size_t size_hint = 0)
      : snapshot_(std::move(snapshot)), size_hint_(size_hint) {}

  const std::shared_ptr<const ExportSnapshot>& snapshot() const { return snapshot_; }
  // The text exposition (rendered on the first call).
  std::shared_ptr<const std::string> Text();
  // `compress(Text())`, computed on the first call; an empty result means
  // "cannot compress" and is kept as null.
  std::shared_ptr<const std::string> Compressed(const Compressor& compress);

 private:
  std::shared_ptr<const ExportSnapshot> snapshot_;
  size_t size_hint_;
  std::once_flag text_once_;
  std::shared_ptr<const std::string> text_;
  std::once_flag compressed_once_;
  std::shared_ptr<const std::string> compressed_;
};

// The standard exposition of `snapshot`, written into `out` (cleared first;
// its capacity is kept, or made `size_hint` bytes).
void RenderTextInto(const ExportSnapshot& snapshot, std::string& out, size_t size_hint = 0);

}  // namespace pmu::metrics
