#!/bin/sh
# Fails when a C++ source differs from what clang-format (the repository's
# .clang-format) would write. Run by `make test`; fix with
#   git ls-files '*.cc' '*.h' | xargs clang-format -i
set -eu
root=${1:-$(dirname "$0")/..}
cd "$root"
if ! command -v clang-format >/dev/null 2>&1; then
  echo "check-format: clang-format is not installed (scripts/install-deps.sh installs it)"
  exit 77
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files '*.cc' '*.h' '*.c')
else
  files=$(find . -path ./build -prune -o \( -name '*.cc' -o -name '*.h' -o -name '*.c' \) -print)
fi
# shellcheck disable=SC2086
clang-format --dry-run -Werror $files
echo "check-format: $(echo "$files" | wc -w) files formatted as .clang-format says"
