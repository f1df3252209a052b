#!/bin/bash
# Tests of packaging/: the Debian package, the systemd unit and the Prometheus
# side. One check per invocation, registered with ctest in CMakeLists.txt:
#
#   packaging_test.sh build-deb      CPACK BUILD_DIR WORK   (fixture: writes WORK)
#   packaging_test.sh deb-contents   WORK
#   packaging_test.sh deb-config     WORK
#   packaging_test.sh deb-depends    WORK
#   packaging_test.sh unit-verify    WORK
#   packaging_test.sh deb-scripts    WORK
#   packaging_test.sh lintian        WORK
#   packaging_test.sh hardening      WORK BUILD_TYPE HARDENING(ON|OFF)
#   packaging_test.sh unit-security  UNIT_FILE
#   packaging_test.sh rules          SOURCE_DIR
#   packaging_test.sh metric-names   SOURCE_DIR DAEMON
#
# Exit status: 0 pass, 1 fail, 77 skipped because a tool is missing (the
# reason is printed).
set -euo pipefail

readonly kSkip=77
readonly kMaxExposure=2.0

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit "$kSkip"; }
need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
  done
}

# The package built by the build-deb fixture. Where that was skipped, the
# reason it left in WORK/skipped skips the dependent checks as well.
deb_of() {
  [[ -f $1/skipped ]] && skip "$(cat "$1/skipped")"
  local debs=("$1"/cpack/pmu-exporter_*.deb)
  [[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "expected one .deb in $1/cpack (did packaging.deb_build run?)"
  echo "${debs[0]}"
}

# cpack on the existing build tree, into WORK, then the package unpacked into
# WORK/root (files) and WORK/control (DEBIAN/ control files). cpack is handed
# the project's install script instead of the project itself, so it installs
# what is already built and never runs the build (its usual pre-install step),
# which could race with a build running beside the tests. Stripping, which
# CPACK_STRIP_FILES asks of that pre-install path, is requested directly.
build_deb() {
  local cpack=$1 build=$2 work=$3 tool
  rm -rf --one-file-system "$work"
  mkdir -p "$work"
  for tool in dpkg-deb dpkg-shlibdeps; do
    command -v "$tool" >/dev/null 2>&1 ||
      { echo "$tool is not installed" >"$work/skipped"; skip "$tool is not installed"; }
  done
  "$cpack" --config "$build/CPackConfig.cmake" -G DEB -B "$work/cpack" \
    -D CPACK_INSTALL_CMAKE_PROJECTS= -D "CPACK_INSTALL_SCRIPTS=$build/cmake_install.cmake" \
    -D CMAKE_INSTALL_DO_STRIP=1 \
    >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; fail "cpack failed"; }
  local deb
  deb=$(deb_of "$work")
  dpkg-deb -x "$deb" "$work/root"
  dpkg-deb -e "$deb" "$work/control"
  echo "built $(basename "$deb"), $(stat -c %s "$deb") bytes"
}

deb_contents() {
  local work=$1 deb
  deb=$(deb_of "$work")
  local listing
  listing=$(dpkg-deb -c "$deb" | awk '{print $NF}')
  local path
  for path in ./usr/bin/pmu-exporter ./lib/systemd/system/pmu-exporter.service \
              ./etc/pmu-exporter/config.toml ./usr/share/man/man8/pmu-exporter.8.gz \
              ./usr/share/doc/pmu-exporter/copyright ./usr/share/doc/pmu-exporter/changelog.gz \
              ./usr/share/pmu-exporter/rules.yml ./usr/share/pmu-exporter/prometheus.yml \
              ./usr/share/pmu-exporter/grafana-dashboard.json; do
    grep -qxF "$path" <<<"$listing" || fail "$path missing from the package: $listing"
  done
  [[ -x $work/root/usr/bin/pmu-exporter ]] || fail "unpacked binary is not executable"
  grep -qxF /etc/pmu-exporter/config.toml "$work/control/conffiles" ||
    fail "config.toml is not a conffile: $(cat "$work/control/conffiles" 2>/dev/null)"
  [[ $(dpkg-deb -f "$deb" Package) == pmu-exporter ]] || fail "package name"
  local version
  version=$(dpkg-deb -f "$deb" Version)
  [[ $("$work/root/usr/bin/pmu-exporter" --version) == *"$version"* ]] ||
    fail "package version $version differs from the binary's --version"
  gzip -t "$work/root/usr/share/man/man8/pmu-exporter.8.gz" || fail "man page is not valid gzip"
  [[ $(zcat "$work/root/usr/share/doc/pmu-exporter/changelog.gz" | head -n1) == \
     "pmu-exporter ($version) "* ]] ||
    fail "changelog.gz does not start with version $version: $(zcat "$work/root/usr/share/doc/pmu-exporter/changelog.gz" | head -n1)"
  [[ $(dpkg-deb -f "$deb" Maintainer) != *localhost* ]] || fail "maintainer address at localhost"
  local section
  for section in NAME SYNOPSIS DESCRIPTION OPTIONS CONFIGURATION SIGNALS "EXIT STATUS" FILES "SEE ALSO"; do
    zgrep -qx "\.SH $section" "$work/root/usr/share/man/man8/pmu-exporter.8.gz" ||
      fail "man page lacks section $section"
  done
  if command -v man >/dev/null 2>&1; then
    local warnings
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z \
                 "$work/root/usr/share/man/man8/pmu-exporter.8.gz" 2>&1 >/dev/null)
    [[ -z $warnings ]] || fail "man page warnings: $warnings"
  else
    echo "man is not installed: the man page was not checked for roff warnings"
  fi
  local script
  for script in postinst prerm postrm; do
    sh -n "$work/control/$script" || fail "$script has a syntax error"
  done
  echo "package holds binary, unit, conffile, man page; version $version"
}

deb_config() {
  local work=$1 out rc=0
  deb_of "$work" >/dev/null
  out=$("$work/root/usr/bin/pmu-exporter" --check-config \
          --config "$work/root/etc/pmu-exporter/config.toml" 2>&1) || rc=$?
  echo "$out"
  [[ $rc -eq 0 ]] || fail "--check-config on the packaged config exited $rc"
  grep -q '^config OK' <<<"$out" || fail "no line starting with 'config OK'"
}

# Depends must name the package of every shared library the binary links
# directly (its DT_NEEDED entries, resolved by ldd, owned per dpkg -S):
# whatever the daemon links today, libpfm4 among them.
deb_depends() {
  local work=$1 deb depends
  deb=$(deb_of "$work")
  need readelf ldd dpkg
  depends=$(dpkg-deb -f "$deb" Depends)
  echo "Depends: $depends"
  local depend_names
  depend_names=$(sed 's/([^)]*)//g; s/[,|]/ /g' <<<"$depends")
  [[ " $depend_names " == *" libpfm4 "* ]] || fail "Depends does not name libpfm4"
  local binary=$work/root/usr/bin/pmu-exporter needed resolved lib path owner owners
  needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  resolved=$(ldd "$binary")
  [[ -n $needed ]] || fail "readelf lists no NEEDED libraries"
  # Each library as ldd finds it and with links resolved (merged /usr: dpkg
  # may know either path); one dpkg -S for all, as each call reads the database.
  local -A path_of=()
  local paths=()
  for lib in $needed; do
    path=$(awk -v lib="$lib" '$1 == lib && $2 == "=>" { print $3 }' <<<"$resolved")
    # The dynamic loader (NEEDED when glibc's __rseq_offset/__rseq_size are
    # used) is listed by ldd by its path, without "=>".
    [[ -n $path ]] || path=$(awk -v lib="$lib" '$1 ~ ("/" lib "$") { print $1 }' <<<"$resolved")
    [[ -n $path ]] || fail "ldd does not resolve $lib"
    path_of[$lib]="$path $(readlink -f "$path")"
    paths+=(${path_of[$lib]})
  done
  owners=$(dpkg -S "${paths[@]}" 2>/dev/null || true)
  for lib in $needed; do
    owner=""
    for path in ${path_of[$lib]}; do
      [[ -n $owner ]] || owner=$(awk -v p="$path" '$NF == p { print $1; exit }' <<<"$owners")
    done
    [[ -n $owner ]] || fail "no Debian package owns ${path_of[$lib]}"
    owner=${owner%%:*}
    # The package, or a name it provides (libspdlog1.10 is depended on as
    # libspdlog1.10-fmt9).
    local names name dep found=""
    names=$(dpkg-query -W -f='${Package}, ${Provides}' "$owner" | sed 's/([^)]*)//g; s/,/ /g')
    for name in $names; do
      for dep in $depend_names; do
        [[ $dep == "$name" ]] && found=$name
      done
    done
    [[ -n $found ]] || fail "Depends names neither $owner nor what it provides (for $lib)"
  done
  echo "every directly linked library's package is in Depends:" $needed
}

# The packaged unit must verify against the packaged binary and man page, so
# a copy points ExecStart at the unpacked binary and man(1) searches the
# unpacked man pages (the unit's Documentation=man:pmu-exporter(8)).
unit_verify() {
  local work=$1
  need systemd-analyze
  deb_of "$work" >/dev/null
  local dir=$work/verify
  mkdir -p "$dir"
  sed "s|/usr/bin/pmu-exporter|$work/root/usr/bin/pmu-exporter|g" \
    "$work/root/lib/systemd/system/pmu-exporter.service" >"$dir/pmu-exporter.service"
  grep -q "^ExecStart=$work/root/usr/bin/pmu-exporter " "$dir/pmu-exporter.service" ||
    fail "the unit's ExecStart does not run /usr/bin/pmu-exporter"
  local out
  out=$(MANPATH=$work/root/usr/share/man systemd-analyze verify "$dir/pmu-exporter.service" 2>&1) ||
    fail "systemd-analyze verify: $out"
  [[ -z $out ]] || fail "systemd-analyze verify printed: $out"
  local dups
  dups=$(grep -E '^[A-Za-z]+=' "$work/root/lib/systemd/system/pmu-exporter.service" |
         cut -d= -f1 | sort | uniq -d | grep -vxE 'SystemCallFilter|ExecReload' || true)
  [[ -z $dups ]] || fail "directives set more than once: $dups"
  echo "systemd-analyze verify: clean"
}

# The maintainer scripts leave the enabled state to deb-systemd-helper and
# start/stop to deb-systemd-invoke (which honours policy-rc.d); systemctl is
# called for daemon-reload only. (What they do under a real systemd is
# checked by systemd_nspawn_test.sh.)
deb_scripts() {
  local work=$1 control
  deb_of "$work" >/dev/null
  control=$work/control
  grep -q 'deb-systemd-helper update-state pmu-exporter.service' "$control/postinst" ||
    fail "postinst does not record the unit's state with deb-systemd-helper update-state"
  grep -q 'deb-systemd-invoke try-restart pmu-exporter.service' "$control/postinst" ||
    fail "postinst does not restart on upgrade with deb-systemd-invoke"
  grep -q 'deb-systemd-invoke stop pmu-exporter.service' "$control/prerm" ||
    fail "prerm does not stop the service with deb-systemd-invoke"
  grep -q 'deb-systemd-helper purge pmu-exporter.service' "$control/postrm" ||
    fail "postrm does not purge the enable state with deb-systemd-helper"
  grep -q 'deb-systemd-helper unmask pmu-exporter.service' "$control/postrm" ||
    fail "postrm does not unmask on purge"
  local bare
  bare=$(grep -h 'systemctl' "$control"/postinst "$control"/prerm "$control"/postrm |
         grep -v '^ *#' | grep -v 'systemctl --system daemon-reload' || true)
  [[ -z $bare ]] || fail "maintainer scripts call systemctl for more than daemon-reload: $bare"
  echo "maintainer scripts use deb-systemd-helper and deb-systemd-invoke"
}

# lintian as Debian runs it on uploads, plus pedantic and experimental tags:
# no error and no warning may remain; info and pedantic tags are printed.
lint() {
  local work=$1 deb out rc=0
  deb=$(deb_of "$work")
  need lintian
  # Exit status: non-zero on an error or warning tag (--fail-on) and when
  # the package could not be processed at all.
  out=$(lintian -EvIL +pedantic --tag-display-limit 0 --fail-on error,warning "$deb" 2>&1) || rc=$?
  echo "$out"
  local bad
  bad=$(grep -E '^[EW]: ' <<<"$out" || true)
  [[ -z $bad && $rc -eq 0 ]] || fail "lintian exited $rc; errors or warnings: $bad"
  echo "lintian $(lintian --print-version): no error, no warning"
}

# The shipped binary carries the hardening a Release build asks for: PIE,
# full RELRO (GNU_RELRO + BIND_NOW), stack protector, fortified libc calls.
hardening() {
  local work=$1 build_type=$2 enabled=$3 deb
  deb=$(deb_of "$work")
  need readelf
  [[ ${build_type^^} != DEBUG ]] || skip "Debug build: hardening flags are off by design"
  [[ $enabled == ON ]] || skip "configured with PMU_HARDENING=OFF (or a sanitizer build)"
  local binary=$work/root/usr/bin/pmu-exporter dynamic symbols
  dynamic=$(readelf -dW "$binary")
  symbols=$(readelf --dyn-syms -W "$binary")
  grep -q 'Type: *DYN' <<<"$(readelf -hW "$binary")" || fail "not a position-independent executable"
  grep -Eq 'FLAGS_1.*PIE' <<<"$dynamic" || fail "no PIE flag in the dynamic section"
  grep -q GNU_RELRO <<<"$(readelf -lW "$binary")" || fail "no GNU_RELRO segment (-z relro)"
  grep -Eq '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' <<<"$dynamic" || fail "no BIND_NOW (-z now)"
  grep -q '__stack_chk_fail' <<<"$symbols" || fail "no __stack_chk_fail: built without a stack protector"
  local fortified
  fortified=$(grep -oE '__[a-z_]+_chk' <<<"$symbols" | grep -v __stack_chk | sort -u | tr '\n' ' ')
  [[ -n $fortified ]] || fail "no fortified libc calls (__*_chk): built without _FORTIFY_SOURCE"
  # -fcf-protection: Debian 12's Scrt1.o carries no CET property note, so
  # the linked binary never has one; the landing pads it puts at every
  # indirect-branch target are the evidence instead.
  local cet="no x86 CET (not x86-64)"
  if [[ $(readelf -hW "$binary") == *X86-64* ]] && command -v objdump >/dev/null 2>&1; then
    local pads
    pads=$(objdump -d --no-show-raw-insn "$binary" | grep -c endbr64 || true)
    ((pads >= 100)) || fail "only $pads endbr64 landing pads: built without -fcf-protection"
    cet="$pads endbr64 landing pads"
  fi
  if command -v hardening-check >/dev/null 2>&1; then
    hardening-check --nocfprotection "$binary" || fail "hardening-check reports a missing protection"
  fi
  echo "PIE, RELRO, BIND_NOW, stack protector, fortified: $fortified; $cet"
}

unit_security() {
  local unit=$1
  need systemd-analyze
  local out line figure
  out=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) ||
    fail "systemd-analyze security failed: $out"
  line=$(grep 'Overall exposure level' <<<"$out") || fail "no exposure level in: $out"
  figure=$(sed -E 's/.*: ([0-9]+\.[0-9]+) .*/\1/' <<<"$line")
  echo "exposure: $figure (at most $kMaxExposure allowed)"
  awk -v f="$figure" -v max="$kMaxExposure" 'BEGIN { exit !(f + 0 <= max + 0) }' ||
    { grep '✗' <<<"$out"; fail "exposure $figure is above $kMaxExposure"; }
}

rules() {
  local src=$1
  need promtool
  promtool check rules "$src/packaging/prometheus/rules.yml"
  promtool check config "$src/packaging/prometheus/prometheus.yml"
  promtool test rules "$src/tests/packaging/rules_test.yml"
}

# Every pmu_* metric name the dashboard and the rules query must be one the
# daemon exports: the names are compared with the # TYPE lines of a real
# exposition (--once). Recording-rule outputs (level:metric:op) contain
# colons and are not daemon names; the look-arounds leave them out. The
# dashboard's queries must also parse: promtool checks them as rules once
# Grafana's variables are replaced.
metric_names() {
  local src=$1 daemon=$2
  need python3 promtool
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  local dashboard=$src/packaging/prometheus/grafana-dashboard.json
  python3 - "$dashboard" "$tmp/dashboard-rules.yml" <<'EOF'
import json, sys

def exprs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from exprs(item)

found = list(exprs(json.load(open(sys.argv[1]))))
if len(found) < 7:
    sys.exit(f"only {len(found)} queries in the dashboard")
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, expr in enumerate(found):
        expr = expr.replace("$__rate_interval", "1m").replace("$instance", ".+")
        out.write(f"      - record: dashboard:query{i}\n        expr: {json.dumps(expr)}\n")
EOF
  promtool check rules "$tmp/dashboard-rules.yml" >/dev/null ||
    fail "a dashboard query does not parse: $(promtool check rules "$tmp/dashboard-rules.yml" 2>&1)"

  printf '[exporter]\nlisten = "127.0.0.1:0"\n[sampling]\ninterval = "100ms"\n' >"$tmp/config.toml"
  "$daemon" --once --config "$tmp/config.toml" >"$tmp/exposition" 2>"$tmp/log" ||
    { cat "$tmp/log"; fail "$daemon --once failed"; }
  local exported used name missing=""
  exported=$(awk '$1 == "#" && $2 == "TYPE" { print $3 }' "$tmp/exposition" | sort -u)
  used=$(grep -ohP '(?<![\w:])pmu_\w+(?![\w:])' "$dashboard" "$src/packaging/prometheus/rules.yml" | sort -u)
  [[ $(wc -l <<<"$used") -ge 5 ]] || fail "expected the five daemon metrics to be used, found: $used"
  for name in $used; do
    grep -qxF "$name" <<<"$exported" || missing="$missing $name"
  done
  [[ -z $missing ]] || fail "not exported by the daemon:$missing (exported: $(echo $exported))"
  echo "metric names used and exported:" $used
}

cmd=${1:?usage: packaging_test.sh CHECK ARGS...}
shift
case $cmd in
  build-deb) build_deb "$@" ;;
  deb-contents) deb_contents "$@" ;;
  deb-config) deb_config "$@" ;;
  deb-depends) deb_depends "$@" ;;
  unit-verify) unit_verify "$@" ;;
  deb-scripts) deb_scripts "$@" ;;
  lintian) lint "$@" ;;
  hardening) hardening "$@" ;;
  unit-security) unit_security "$@" ;;
  rules) rules "$@" ;;
  metric-names) metric_names "$@" ;;
  *) fail "unknown check $cmd" ;;
esac
