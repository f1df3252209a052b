#!/bin/sh
# Runs every libFuzzer binary of a `make fuzz` build for SECONDS each, seeded
# with fuzz/corpus/<name>/ (new inputs go to BUILD/fuzz-corpus/<name>/, the
# repository's corpus stays as committed), and prints the executions per
# target. Exit status 1 when a target crashed; its input is kept under
# BUILD/fuzz-artifacts/ (add it to fuzz/corpus/<name>/ once fixed).
# Usage: scripts/run-fuzz.sh BUILD SECONDS [TARGET...]
set -u
build=$1
seconds=$2
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -eq 0 ]; then
  set -- $(cd "$build/fuzz" && ls fuzz_* 2>/dev/null | grep -v '_regression$' | sed 's/^fuzz_//')
fi
[ $# -gt 0 ] || { echo "run-fuzz: no fuzz targets in $build/fuzz" >&2; exit 1; }
mkdir -p "$build/fuzz-artifacts"
results="$build/fuzz-results.md"
printf '| target | seconds | executions | execs/s | corpus | result |\n|---|---|---|---|---|---|\n' >"$results"
status=0
for name in "$@"; do
  work="$build/fuzz-corpus/$name"
  mkdir -p "$work"
  log="$build/fuzz-$name.log"
  # -rss_limit_mb: a target must not need gigabytes (the config suggestion
  # once did); -timeout: nor seconds per input.
  "$build/fuzz/fuzz_$name" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=1024 -max_len=65536 -artifact_prefix="$build/fuzz-artifacts/$name-" \
    "$work" "$src/fuzz/corpus/$name" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(ls "$work" | wc -l)
  if [ $rc -eq 0 ]; then result=ok; else result="CRASH (see $log)"; status=1; fi
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$seconds" "${execs:-?}" "${rate:-?}" \
    "$corpus" "$result" >>"$results"
done
cat "$results"
exit $status
