#!/bin/sh
# aarch64 compile check of rseq/: compiles the library sources and a file
# that instantiates every section with Debian's aarch64 cross compiler, with
# the injection hooks off and on, and checks the object carries the rseq
# sections. Exit 77 (ctest: skipped) when the cross compiler is missing.
set -eu
src=${1:?usage: check_aarch64.sh <source-dir> [out-dir]}
out=${2:-$(mktemp -d)}
cxx=${AARCH64_CXX:-aarch64-linux-gnu-g++}
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "SKIP: $cxx not found (apt-get install g++-aarch64-linux-gnu)"
  exit 77
fi
mkdir -p "$out"
flags="-std=c++20 -O2 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast -Werror -I$src/rseq/include"
for hooks in 0 1; do
  for f in "$src"/rseq/src/*.cc "$src"/tests/rseq/aarch64_compile_check.cc; do
    obj="$out/$(basename "$f" .cc).hooks$hooks.o"
    $cxx $flags -DPMU_TEST_HOOKS=$hooks -c "$f" -o "$obj"
  done
done
objdump=${AARCH64_OBJDUMP:-aarch64-linux-gnu-objdump}
if command -v "$objdump" >/dev/null 2>&1; then
  for s in __rseq_cs __rseq_cs_ptr_array __rseq_exit_point_array __rseq_failure; do
    if ! "$objdump" -h "$out/aarch64_compile_check.hooks0.o" | grep -q " $s "; then
      echo "FAIL: section $s missing from the aarch64 object"
      exit 1
    fi
  done
fi
echo "aarch64 compile check passed ($($cxx --version | head -n1))"
