#!/bin/bash
# The Debian package under a real systemd: boots systemd as PID 1 in
# systemd-nspawn on a Debian rootfs made by debootstrap, installs the built
# .deb with its dependencies and checks the service as an administrator
# meets it:
#
#   - the unit is active only after the daemon's READY=1, and /metrics then
#     serves per-CPU software-event series, under a DynamicUser holding only
#     CAP_PERFMON;
#   - `systemctl reload` with a changed file keeps the PID and applies it;
#     with a broken file it fails and the service keeps serving the old one;
#   - kill -STOP of the main PID ends in a watchdog restart;
#   - `systemctl stop` is clean and fast;
#   - `systemd-analyze security` rates the unit at most 2.0 (inside, online);
#   - sched:sched_switch (with tracefs mounted and the documented
#     CAP_DAC_READ_SEARCH drop-in) and msr/tsc/ count per CPU under the unit,
#     where the daemon build resolves such events;
#   - remove masks the unit, purge leaves nothing behind (no enable symlink,
#     no deb-systemd-helper state, no files), and a reinstall comes back
#     disabled.
#
#   systemd_nspawn_test.sh WORK
#
# WORK is the packaging.deb_build fixture (WORK/cpack/*.deb). The rootfs
# comes from the mirror and suite apt is configured with on this host, and is
# cached between runs in $PMU_TEST_CACHE (default /var/cache/pmu-exporter-test),
# outside the build tree, together with the downloaded .debs. The first run
# takes about three minutes (debootstrap), later runs much less.
#
# Needs root, systemd-nspawn (systemd-container) and debootstrap, and the
# archive when the cache is cold or the package's dependencies changed;
# otherwise it prints why and exits 77 (skipped).
#
# Two settings are shortened for the test only, in runtime drop-ins that the
# package never sees: RestartSec=1s throughout, and WatchdogSec=5s for the
# watchdog step only, so that its restart takes seconds instead of a minute
# (and a loaded machine cannot trip the watchdog during the other steps).
set -euo pipefail

readonly kSkip=77
readonly kMaxExposure=2.0
readonly kUnit=pmu-exporter.service
readonly kCache=${PMU_TEST_CACHE:-/var/cache/pmu-exporter-test}

fail() {
  echo "FAIL: $*" >&2
  # Once the container runs, what its systemd saw of the unit.
  if [[ -n ${leader:-} ]]; then
    echo "--- journal of $kUnit in the container:" >&2
    ct journalctl -u "$kUnit" --no-pager -o short-monotonic 2>&1 | tail -n 40 >&2 || true
  fi
  exit 1
}
skip() { echo "SKIP: $*" >&2; exit "$kSkip"; }
log() { echo "[$(date +%T)] $*"; }

work=${1:?usage: systemd_nspawn_test.sh WORK}
[[ -f $work/skipped ]] && skip "$(cat "$work/skipped")"
debs=("$work"/cpack/pmu-exporter_*.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "expected one .deb in $work/cpack"
deb=${debs[0]}

[[ $(id -u) -eq 0 ]] || skip "needs root (systemd-nspawn, debootstrap)"
for tool in systemd-nspawn debootstrap nsenter curl dpkg-deb apt-get; do
  command -v "$tool" >/dev/null 2>&1 ||
    skip "$tool is not installed (apt-get install systemd-container debootstrap curl)"
done

# --- the archive, as apt on this host knows it --------------------------------
# The suite is this host's release; its sources (base, updates, security) are
# handed to the container unchanged, so the package's dependencies resolve
# to the versions it was built against.
. /etc/os-release
suite=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
arch=$(dpkg --print-architecture)
sources=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' \
            'Created-By: Packages' 2>/dev/null | sort -u)
mirror=$(awk -v s="$suite" '$2 == s && $3 == "main" { print $1; exit }' <<<"$sources")
[[ -n $mirror ]] || skip "apt has no source for $suite main (apt-get indextargets)"
archive_reachable() {
  curl -fsS --max-time 15 -o /dev/null "${mirror%/}/dists/$suite/Release"
}

# --- the cached rootfs ----------------------------------------------------------
# $kCache/rootfs-$suite-$arch: debootstrap minbase with systemd and curl, the
# host's apt sources, and the package's dependencies installed (apt-get
# satisfy). $kCache/archives keeps the downloaded .debs.
mkdir -p "$kCache/archives"
rootfs=$kCache/rootfs-$suite-$arch
nspawn_run() {  # a command in a rootfs, not booted, with the host's network
  local root=$1
  shift
  systemd-nspawn --quiet --register=no --keep-unit --directory="$root" --pipe \
    --bind="$kCache/archives:/var/cache/apt/archives" \
    --setenv=DEBIAN_FRONTEND=noninteractive -- "$@"
}
prepare_rootfs() {
  if [[ ! -f $rootfs/.complete ]]; then
    archive_reachable || skip "no cached rootfs in $rootfs and $mirror is unreachable"
    log "debootstrap $suite from $mirror into $rootfs (first run only)"
    # debootstrap mounts /proc and /sys in its target; a killed run can
    # leave them there. Never delete through a mount.
    grep -q "^$rootfs.new/" <<<"$(findmnt -rn -o TARGET)" &&
      fail "something is still mounted below $rootfs.new (a killed debootstrap?): unmount it"
    rm -rf --one-file-system "$rootfs.new"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,curl,procps \
      --cache-dir="$kCache/archives" "$suite" "$rootfs.new" "$mirror" \
      >"$kCache/debootstrap.log" 2>&1 ||
      { tail -n 30 "$kCache/debootstrap.log"; fail "debootstrap failed (log: $kCache/debootstrap.log)"; }
    awk '{ print "deb " $1 " " $2 " " $3 }' <<<"$sources" >"$rootfs.new/etc/apt/sources.list"
    # No recommends in the container, as on a minimal server.
    echo 'APT::Install-Recommends "false";' >"$rootfs.new/etc/apt/apt.conf.d/90pmu-test"
    nspawn_run "$rootfs.new" apt-get update -qq >/dev/null ||
      skip "systemd-nspawn cannot run a command in the rootfs here (or apt-get update failed)"
    touch "$rootfs.new/.complete"
    mv "$rootfs.new" "$rootfs"
  fi
  # The package's dependencies, into the cache itself: a no-op when they
  # are there already, so later runs need no network at all.
  local depends
  depends=$(dpkg-deb -f "$deb" Depends)
  if ! nspawn_run "$rootfs" apt-get satisfy -qq -y --no-download "$depends" >/dev/null 2>&1; then
    archive_reachable || skip "the cached rootfs lacks dependencies ($depends) and $mirror is unreachable"
    log "installing the package's dependencies into the cached rootfs"
    nspawn_run "$rootfs" apt-get update -qq >/dev/null
    nspawn_run "$rootfs" apt-get satisfy -qq -y "$depends" >/dev/null ||
      fail "apt-get satisfy '$depends' failed in the rootfs"
  fi
}
start=$SECONDS
(
  flock 9
  prepare_rootfs
) 9>"$kCache/lock"
log "rootfs ready in $((SECONDS - start)) s"

# --- boot ------------------------------------------------------------------------
tmp=$(mktemp -d /var/tmp/pmu-nspawn-test.XXXXXX)
nspawn_pid=""
cleanup() {
  if [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
    # SIGRTMIN+4 asks the container's systemd to power off; then force.
    [[ -n ${leader:-} ]] && kill -s RTMIN+4 "$leader" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  grep -q "^$tmp/" <<<"$(findmnt -rn -o TARGET)" || rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT
cp -a --reflink=auto "$rootfs" "$tmp/root"
mkdir -p "$tmp/pkg"
cp "$deb" "$tmp/pkg/"
log "rootfs copied ($((SECONDS - start)) s)"

# --private-network: the container has its own loopback, so its port 9842
# meets nothing on the host. perf_event_open needs CAP_PERFMON in the
# container's bounding set and an exception in nspawn's seccomp filter.
machine=pmu-test-$$
systemd-nspawn --quiet --register=no --keep-unit --boot --private-network \
  --machine="$machine" --directory="$tmp/root" \
  --capability=CAP_PERFMON --system-call-filter=perf_event_open \
  --bind-ro="$tmp/pkg:/srv/pmu-test" --console=read-only \
  >"$tmp/console.log" 2>&1 </dev/null &
nspawn_pid=$!

# The container's PID 1, as the host sees it: nspawn's descendant in
# another PID namespace.
leader=""
for _ in $(seq 100); do
  for pid in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null) \
             $(for p in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null); do ps -o pid= --ppid "$p"; done); do
    if [[ $(readlink "/proc/$pid/ns/pid") != "$(readlink /proc/self/ns/pid)" &&
          $(cat "/proc/$pid/comm" 2>/dev/null) == systemd ]]; then
      leader=$pid
      break 2
    fi
  done
  kill -0 "$nspawn_pid" 2>/dev/null || { cat "$tmp/console.log"; fail "systemd-nspawn exited"; }
  sleep 0.1
done
[[ -n $leader ]] || { cat "$tmp/console.log"; fail "no systemd PID 1 in the container"; }
ct() {  # a command inside the booted container
  nsenter --target "$leader" --mount --uts --ipc --net --pid --cgroup -- \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
# Until PID 1 has its private socket, systemctl cannot connect at all; then
# it reports initializing/starting until boot is done.
state=""
for _ in $(seq 900); do
  state=$(ct systemctl is-system-running 2>/dev/null || true)
  [[ $state == running || $state == degraded || $state == maintenance ]] && break
  kill -0 "$nspawn_pid" 2>/dev/null || break
  sleep 0.1
done
[[ $state == running || $state == degraded ]] ||
  { cat "$tmp/console.log"; fail "the container's systemd did not finish booting: '$state'"; }
[[ $state == running ]] || ct systemctl --failed --no-legend --plain
log "systemd $(ct systemctl --version | awk 'NR==1 { print $2 }') booted as PID 1 ($state, $((SECONDS - start)) s)"

show() { ct systemctl show -p "$1" --value "$kUnit"; }
metrics() { ct curl -fsS --max-time 5 http://127.0.0.1:9842/metrics; }

# --- install ---------------------------------------------------------------------
ct apt-get install -qq -y "/srv/pmu-test/$(basename "$deb")" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "apt-get install of the package failed"; }
[[ $(ct systemctl is-enabled "$kUnit" || true) == disabled ]] ||
  fail "the unit is enabled on installation: $(ct systemctl is-enabled "$kUnit")"
[[ $(show ActiveState) == inactive ]] || fail "the service started on installation"
log "installed $(basename "$deb"); unit disabled and inactive"

# Test-only speed-ups (see the header), in /run so that purge is judged on
# what the package and the administrator's enable leave.
ct mkdir -p /run/systemd/system/pmu-exporter.service.d
printf '[Service]\nRestartSec=1s\n' |
  ct tee /run/systemd/system/pmu-exporter.service.d/50-test-speed.conf >/dev/null
ct systemctl daemon-reload

# --- start: active only after READY=1 --------------------------------------------
ct systemctl enable "$kUnit" 2>/dev/null
[[ $(show Type) == notify ]] || fail "Type=$(show Type), expected notify"
ct systemctl start --no-block "$kUnit"
seen_activating=no
for _ in $(seq 300); do
  st=$(show ActiveState)
  [[ $st == activating ]] && seen_activating=yes
  [[ $st == active || $st == failed ]] && break
  sleep 0.05
done
[[ $st == active ]] || { ct journalctl -u "$kUnit" --no-pager | tail -n 30; fail "service not active: $st"; }
# At the moment the unit turned active the daemon had already served and
# sampled: its "serving" line precedes systemd's "Started" line, and the
# ExecMain start lies before the ActiveEnter time.
main_pid=$(show MainPID)
exec_start=$(show ExecMainStartTimestampMonotonic)
active_enter=$(show ActiveEnterTimestampMonotonic)
((active_enter > exec_start)) || fail "ActiveEnter $active_enter not after ExecMainStart $exec_start"
journal=$(ct journalctl -u "$kUnit" -o cat --no-pager)
serving_line=$(grep -n 'serving http' <<<"$journal" | head -n1 | cut -d: -f1)
started_line=$(grep -n '^Started ' <<<"$journal" | head -n1 | cut -d: -f1)
[[ -n $serving_line && -n $started_line && $serving_line -lt $started_line ]] ||
  fail "expected the daemon's 'serving' line before systemd's 'Started': $journal"
log "active after READY=1 ($(( (active_enter - exec_start) / 1000 )) ms after exec; activating seen: $seen_activating); status: $(show StatusText)"

# --- per-CPU software series under DynamicUser -----------------------------------
status=$(ct cat "/proc/$main_pid/status")
uid=$(awk '/^Uid:/ { print $2 }' <<<"$status")
((uid >= 61184 && uid <= 65519)) || fail "main process runs as UID $uid, not a dynamic user"
capeff=$(awk '/^CapEff:/ { print $2 }' <<<"$status")
[[ $((16#$capeff)) -eq $((1 << 38)) ]] || fail "effective capabilities $capeff, expected CAP_PERFMON only (1<<38)"
ncpu=$(ct nproc --all)
online=$(ct cat /sys/devices/system/cpu/online)
# A CPU may see no context switch in the first sampling interval: scrape
# until every CPU has counted both (or give up after 10 s and report).
per_cpu_counted() {
  local e s
  for e in cpu-clock context-switches; do
    s=$(grep -E "^pmu_events_total\{.*event=\"$e\"" <<<"$1" || true)
    [[ -n $s ]] && awk '{ if ($NF <= 0) exit 1 }' <<<"$s" || return 1
  done
}
out=""
for _ in $(seq 50); do
  out=$(metrics) || fail "/metrics does not answer"
  per_cpu_counted "$out" && break
  sleep 0.2
done
for event in cpu-clock context-switches; do
  series=$(grep -E "^pmu_events_total\\{.*event=\"$event\"" <<<"$out" || true)
  cpus=$(grep -oE 'cpu="[0-9]+"' <<<"$series" | sort -u | wc -l)
  [[ $cpus -ge 1 && $cpus -eq $(grep -c . <<<"$series") ]] ||
    fail "$event: expected one series per CPU, got: $series"
  awk '{ if ($NF <= 0) exit 1 }' <<<"$series" || fail "$event: a CPU counted nothing: $series"
done
expected=$(awk -F, '{ n = 0; for (i = 1; i <= NF; i++) { split($i, r, "-"); n += (r[2] == "" ? 1 : r[2] - r[1] + 1) } print n }' <<<"$online")
[[ $cpus -eq $expected ]] || fail "series for $cpus CPUs, $expected online ($online of $ncpu)"
log "per-CPU cpu-clock and context-switches on $cpus CPUs, as UID $uid with CapEff=$capeff"

# --- reload: a changed file applies, same PID ----------------------------------
conf=/etc/pmu-exporter/config.toml
ct cp "$conf" /root/config.toml.orig
grep -q 'event="task-clock"' <<<"$out" && fail "task-clock counted before the reload"
printf '\n[[events]]\nname = "task-clock"\nevent = "task-clock"\n' | ct tee -a "$conf" >/dev/null
ct systemctl reload "$kUnit" || fail "reload of a valid changed config failed"
[[ $(show MainPID) == "$main_pid" ]] || fail "reload changed the main PID"
applied=no
for _ in $(seq 50); do
  grep -q 'pmu_events_total{.*event="task-clock"' <<<"$(metrics || true)" && { applied=yes; break; }
  sleep 0.1
done
[[ $applied == yes ]] || fail "the reloaded config (task-clock) is not applied"
log "reload applied a new event; PID $main_pid kept"

# --- reload: a broken file fails visibly, service keeps serving ------------------
printf '\n[sampling]\ninterval = "fast"\n' | ct tee -a "$conf" >/dev/null
if reload_out=$(ct systemctl reload "$kUnit" 2>&1); then
  fail "systemctl reload succeeded on a broken config"
fi
[[ $(show ActiveState) == active && $(show MainPID) == "$main_pid" ]] ||
  fail "the service did not keep running after a rejected reload"
grep -q 'pmu_events_total{.*event="task-clock"' <<<"$(metrics || true)" ||
  fail "/metrics stopped serving the previous config after a rejected reload"
rejected=$(ct journalctl -u "$kUnit" -o cat --no-pager | grep -F "$conf:" | tail -n1)
[[ -n $rejected ]] || fail "the journal does not name the file at fault"
log "broken config: reload failed (${reload_out%%$'\n'*}); still serving; journal: $rejected"
ct cp /root/config.toml.orig "$conf"

# --- watchdog: a stopped main process is restarted --------------------------------
# The shipped 30 s, shortened for this step only (the daemon learns the
# period from WATCHDOG_USEC at start, hence the restart).
printf '[Service]\nWatchdogSec=5s\n' |
  ct tee /run/systemd/system/pmu-exporter.service.d/55-test-watchdog.conf >/dev/null
ct systemctl daemon-reload
ct systemctl restart "$kUnit"
main_pid=$(show MainPID)
[[ $(show WatchdogUSec) == 5s ]] || fail "WatchdogUSec=$(show WatchdogUSec) after the drop-in"
restarts_before=$(show NRestarts)
ct kill -STOP "$main_pid"
t0=$SECONDS
new_pid=$main_pid
for _ in $(seq 400); do
  new_pid=$(show MainPID)
  [[ $new_pid != "$main_pid" && $new_pid != 0 && $(show ActiveState) == active ]] && break
  sleep 0.1
done
[[ $new_pid != "$main_pid" && $new_pid != 0 ]] || fail "no restart after kill -STOP (MainPID $new_pid)"
# (grep reads a captured journal: grep -q on a pipe would end journalctl
# with SIGPIPE, which pipefail reports as a failure.)
grep -qi 'watchdog timeout' <<<"$(ct journalctl -u "$kUnit" -o cat --no-pager)" ||
  fail "the restart was not the watchdog's"
(($(show NRestarts) > restarts_before)) || fail "NRestarts did not grow"
metrics >/dev/null || fail "/metrics does not answer after the watchdog restart"
log "watchdog restarted the stopped daemon in $((SECONDS - t0)) s (PID $main_pid -> $new_pid)"
ct rm /run/systemd/system/pmu-exporter.service.d/55-test-watchdog.conf
ct systemctl daemon-reload

# --- tracepoint and msr events under the unit ----------------------------------------
# Only where this daemon build resolves them (sysfs PMU and tracepoint
# events): the msr PMU's tsc needs nothing beyond CAP_PERFMON; a tracepoint
# needs tracefs mounted and its id files readable, which for the dynamic
# user takes the drop-in README.md documents (CAP_DAC_READ_SEARCH).
probe=/root/probe.toml
printf '[[events]]\nname = "sched_switch"\nevent = "sched:sched_switch"\n[[events]]\nname = "tsc"\nevent = "msr/tsc/"\n' |
  ct tee "$probe" >/dev/null
probe_out=$(ct pmu-exporter --check-config --config "$probe" 2>&1 || true)
# A build without sysfs PMU and tracepoint resolution hands these names to
# libpfm4, which cannot encode them.
if ! grep -q '^config OK' <<<"$probe_out" || grep -q "cannot encode event '\(sched:sched_switch\|msr/tsc/\)'" <<<"$probe_out"; then
  log "tracepoint/msr events: not checked, this daemon build does not resolve them: $(grep -m1 -i 'cannot encode\|error' <<<"$probe_out" || echo "$probe_out")"
else
  ct sh -c 'mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing' ||
    fail "cannot mount tracefs in the container"
  printf '[Service]\nAmbientCapabilities=CAP_PERFMON CAP_DAC_READ_SEARCH\nCapabilityBoundingSet=CAP_PERFMON CAP_DAC_READ_SEARCH\n' |
    ct tee /run/systemd/system/pmu-exporter.service.d/60-tracepoints.conf >/dev/null
  ct cp "$conf" /root/config.toml.orig
  ct sh -c "cat $probe >>$conf"
  ct systemctl daemon-reload
  ct systemctl restart "$kUnit"
  # Until every CPU has counted both (a CPU may see no switch in the first
  # sampling interval).
  counted() {
    local e s
    for e in sched_switch tsc; do
      s=$(grep -E "^pmu_events_total\{.*event=\"$e\"" <<<"$1" || true)
      [[ $(grep -c . <<<"$s") -eq $cpus ]] && awk '{ if ($NF <= 0) exit 1 }' <<<"$s" || return 1
    done
  }
  out=""
  for _ in $(seq 100); do
    out=$(metrics || true)
    counted "$out" && break
    sleep 0.2
  done
  for event in sched_switch tsc; do
    series=$(grep -E "^pmu_events_total\{.*event=\"$event\"" <<<"$out" || true)
    [[ $(grep -c . <<<"$series") -eq $cpus ]] || fail "$event under the unit: expected $cpus per-CPU series, got: $series"
    awk '{ if ($NF <= 0) exit 1 }' <<<"$series" || fail "$event counted nothing under the unit: $series"
  done
  ct rm /run/systemd/system/pmu-exporter.service.d/60-tracepoints.conf
  ct cp /root/config.toml.orig "$conf"
  ct systemctl daemon-reload
  ct systemctl restart "$kUnit"
  log "sched:sched_switch (tracefs, with the CAP_DAC_READ_SEARCH drop-in) and msr/tsc/ count per CPU under the unit"
fi

# --- stop: clean and fast ------------------------------------------------------------
t0=$(date +%s%N)
ct systemctl stop "$kUnit"
stop_ms=$((($(date +%s%N) - t0) / 1000000))
[[ $(show Result) == success ]] || fail "stop result $(show Result)"
grep -qi 'SIGKILL\|timed out' <<<"$(ct journalctl -u "$kUnit" -o cat --no-pager | tail -n 5)" &&
  fail "stop needed SIGKILL"
((stop_ms < 3000)) || fail "stop took $stop_ms ms"
log "stopped cleanly in $stop_ms ms"

# --- exposure, measured by the container's systemd -------------------------------
security=$(ct systemd-analyze security --no-pager "$kUnit")
exposure=$(sed -nE 's/.*Overall exposure level for .*: ([0-9.]+) .*/\1/p' <<<"$security")
[[ -n $exposure ]] || fail "no exposure level: $security"
awk -v f="$exposure" -v m="$kMaxExposure" 'BEGIN { exit !(f <= m) }' ||
  { grep '✗' <<<"$security"; fail "exposure $exposure is above $kMaxExposure"; }
log "systemd-analyze security inside the container: $exposure"

# --- remove, purge, reinstall ----------------------------------------------------------
snapshot() {
  ct find /etc /usr /var/lib /opt /srv -xdev \
    -path /var/lib/dpkg -prune -o -path /var/lib/apt -prune -o \
    -path /var/lib/systemd/catalog -prune -o -path /var/lib/systemd/random-seed -prune -o \
    -path /var/lib/systemd/timers -prune -o -path /var/lib/systemd/deb-systemd-helper-enabled -prune -o \
    -path /etc/ld.so.cache -prune -o -path /srv/pmu-test -prune -o -print | sort
}
wants=/etc/systemd/system/multi-user.target.wants/pmu-exporter.service
ct test -L "$wants" || fail "systemctl enable made no $wants"
ct apt-get remove -qq -y pmu-exporter >"$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log"; fail "remove failed"; }
[[ $(ct systemctl is-enabled "$kUnit" 2>&1 || true) == masked ]] ||
  fail "after remove the unit is '$(ct systemctl is-enabled "$kUnit" 2>&1 || true)', expected masked"
ct apt-get purge -qq -y pmu-exporter >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "purge failed"; }
left=$(ct sh -c 'ls -d /etc/systemd/system/*/pmu-exporter.service /etc/systemd/system/pmu-exporter.service \
  /var/lib/systemd/deb-systemd-helper-*/*pmu-exporter* /var/lib/systemd/deb-systemd-helper-*/*/*pmu-exporter* \
  /etc/pmu-exporter /usr/share/pmu-exporter /usr/share/doc/pmu-exporter /var/lib/private/pmu-exporter \
  /var/lib/pmu-exporter /run/pmu-exporter /usr/bin/pmu-exporter 2>/dev/null' || true)
[[ -z $left ]] || fail "purge left: $left"
[[ -z $(ct systemctl list-unit-files --no-legend "$kUnit" || true) ]] || fail "systemd still knows the unit"

# A reinstall after purge starts from scratch: disabled.
ct apt-get install -qq -y "/srv/pmu-test/$(basename "$deb")" >"$tmp/install2.log" 2>&1 ||
  { cat "$tmp/install2.log"; fail "reinstall failed"; }
[[ $(ct systemctl is-enabled "$kUnit" || true) == disabled ]] ||
  fail "a reinstall after purge comes back '$(ct systemctl is-enabled "$kUnit")'"
ct apt-get purge -qq -y pmu-exporter >"$tmp/purge2.log" 2>&1 || { cat "$tmp/purge2.log"; fail "second purge failed"; }
log "remove masked the unit; purge left nothing; reinstall came back disabled"

# Whatever else the package touched: the files below /etc, /usr and /var/lib
# compared with a container where it never was (a fresh copy of the rootfs).
before=$(cd "$rootfs" && find etc usr var/lib opt srv -xdev \
  -path var/lib/dpkg -prune -o -path var/lib/apt -prune -o \
  -path var/lib/systemd/catalog -prune -o -path var/lib/systemd/random-seed -prune -o \
  -path var/lib/systemd/timers -prune -o -path var/lib/systemd/deb-systemd-helper-enabled -prune -o \
  -path etc/ld.so.cache -prune -o -path srv/pmu-test -prune -o -print | sed 's|^|/|' | sort)
after=$(snapshot)
extra=$(comm -13 <(echo "$before") <(echo "$after") |
        grep -vE '^/etc/(machine-id|hostname|resolv.conf|localtime|\.pwd\.lock|systemd/system/(getty|multi-user).target.wants|systemd/system/.*\.wants$)|^/var/lib/(systemd|dbus)/' || true)
[[ -z $extra ]] || fail "files left after purge that a fresh rootfs lacks: $extra"
log "passed in $((SECONDS - start)) s"
