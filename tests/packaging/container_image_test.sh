#!/bin/bash
# The container image (packaging/container/build-image.sh) built from the
# package, run the way the Kubernetes DaemonSet runs it: as its
# unprivileged user, all capabilities dropped but CAP_PERFMON, read-only
# root filesystem, the configuration mounted read-only from the ConfigMap in
# packaging/kubernetes/configmap.yaml. Checks that the daemon holds exactly
# CAP_PERFMON (from the file capability, not from root), and scrapes
# per-CPU software-event series.
#
#   container_image_test.sh WORK SOURCE_DIR
#
# Runs the image with podman. Where podman cannot run a container on this
# machine, the same rootfs runs under systemd-nspawn with the same user,
# capability and read-only root, and the test says so. Exit 77 (skipped,
# with the reason) when not root, or when mmdebstrap is missing, or the
# archive is unreachable and the downloaded .debs are not cached.
set -euo pipefail

readonly kSkip=77
readonly kCache=${PMU_TEST_CACHE:-/var/cache/pmu-exporter-test}
readonly kUid=65532

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit "$kSkip"; }
log() { echo "[$(date +%T)] $*"; }

work=${1:?usage: container_image_test.sh WORK SOURCE_DIR}
src=${2:?usage: container_image_test.sh WORK SOURCE_DIR}
[[ -f $work/skipped ]] && skip "$(cat "$work/skipped")"
debs=("$work"/cpack/pmu-exporter_*.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "expected one .deb in $work/cpack"
deb=${debs[0]}
[[ $(id -u) -eq 0 ]] || skip "needs root (mmdebstrap, setcap, podman)"
for tool in mmdebstrap setcap curl /usr/bin/python3; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed (apt-get install mmdebstrap libcap2-bin curl python3)"
done
/usr/bin/python3 -c 'import yaml' 2>/dev/null || skip "python3-yaml is not installed"

start=$SECONDS
# The rootfs (about 120 MB) lives outside the build tree, for this run only.
out=$(mktemp -d /var/tmp/pmu-image-test.XXXXXX)
tag=localhost/pmu-exporter-test:$$
mkdir -p "$kCache"
trap 'grep -q "^$out/" <<<"$(findmnt -rn -o TARGET)" || rm -rf --one-file-system "$out"' EXIT
(
  flock 9
  # Without the lock's fd 9: mmdebstrap hands apt a descriptor number for
  # dash to write to (cat >&N), and dash accepts single digits only.
  PMU_IMAGE_APT_CACHE=$kCache/image-archives \
    "$src/packaging/container/build-image.sh" "$deb" "$out" "$tag" >"$work/image.log" 2>&1 9>&-
) 9>"$kCache/image.lock" || {
  rc=$?
  cat "$work/image.log"
  [[ $rc -eq $kSkip ]] && skip "build-image.sh skipped"
  grep -qiE 'could not resolve|failed to fetch|temporary failure|connection' "$work/image.log" &&
    skip "the archive is unreachable and the image's packages are not cached"
  fail "build-image.sh failed ($rc)"
}
log "image built in $((SECONDS - start)) s: $(du -sh "$out/rootfs" | cut -f1) rootfs"

# The configuration the DaemonSet mounts.
/usr/bin/python3 - "$src/packaging/kubernetes/configmap.yaml" "$work/image-config.toml" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
open(sys.argv[2], "w").write(doc["data"]["config.toml"])
EOF
chmod 0644 "$work/image-config.toml"

# The rootfs as shipped: unprivileged user, capability on the binary only.
grep -q "^pmu-exporter:x:$kUid:$kUid:" "$out/rootfs/etc/passwd" || fail "no pmu-exporter user in the image"
grep -q 'cap_perfmon[=+]ep' <<<"$(getcap "$out/rootfs/usr/bin/pmu-exporter")" ||
  fail "the binary lacks the cap_perfmon file capability: $(getcap "$out/rootfs/usr/bin/pmu-exporter")"

# What the running daemon must show, whichever runtime started it.
check_process() {  # PID (as the host sees it)
  local status uid capeff
  status=$(cat "/proc/$1/status")
  uid=$(awk '/^Uid:/ { print $2 }' <<<"$status")
  capeff=$(awk '/^CapEff:/ { print $2 }' <<<"$status")
  # The user namespace (if any) maps the image's user; the check reads the
  # ID inside it.
  [[ $(awk '/^NoNewPrivs:/ { print $2 }' <<<"$status") == 0 ]] || fail "no_new_privs is set"
  [[ $((16#$capeff)) -eq $((1 << 38)) ]] || fail "CapEff $capeff, expected CAP_PERFMON only"
  echo "$uid $capeff $(awk '/^VmRSS:/ { print $2 " " $3 }' <<<"$status")"
}
scrape_check() {  # URL
  local out="" cpus series expected online
  for _ in $(seq 100); do
    out=$(curl -fsS --max-time 5 "$1" 2>/dev/null) && grep -q '^pmu_events_total{' <<<"$out" && break
    sleep 0.2
  done
  [[ -n $out ]] || fail "no answer from $1"
  online=$(cat /sys/devices/system/cpu/online)
  expected=$(awk -F, '{ n = 0; for (i = 1; i <= NF; i++) { split($i, r, "-"); n += (r[2] == "" ? 1 : r[2] - r[1] + 1) } print n }' <<<"$online")
  series=$(grep -E '^pmu_events_total\{.*event="cpu-clock"' <<<"$out" || true)
  cpus=$(grep -oE 'cpu="[0-9]+"' <<<"$series" | sort -u | wc -l)
  [[ $cpus -eq $expected ]] || fail "cpu-clock series for $cpus CPUs, $expected online: $series"
  awk '{ if ($NF <= 0) exit 1 }' <<<"$series" || fail "a CPU counted no cpu-clock: $series"
  echo "$cpus"
}

# --- podman ------------------------------------------------------------------------
podman_reason=""
started=no
if ! command -v podman >/dev/null 2>&1; then
  podman_reason="podman is not installed"
elif ! podman image exists "$tag"; then
  podman_reason="the image was not imported into podman"
fi
name=pmu-exporter-test-$$
cleanup() {
  command -v podman >/dev/null 2>&1 && {
    podman rm -f -t 2 "$name" >/dev/null 2>&1 || true
    podman rmi -f "$tag" >/dev/null 2>&1 || true
  }
  [[ -n ${nspawn_pid:-} ]] && { kill "$nspawn_pid" 2>/dev/null; wait "$nspawn_pid" 2>/dev/null; } || true
  # Never into a mount a killed build may have left behind.
  grep -q "^$out/" <<<"$(findmnt -rn -o TARGET)" || rm -rf --one-file-system "$out"
}
trap cleanup EXIT
# Resource limits at or below this shell's hard limits: podman's defaults
# raise them, which needs CAP_SYS_RESOURCE (absent when this runs in a
# container itself).
nofile=$(( $(ulimit -Hn) < 16384 ? $(ulimit -Hn) : 16384 ))
nproc=$(ulimit -Hu)
[[ $nproc == unlimited || $nproc -gt 4096 ]] && nproc=4096
runtime_note=""
podman_run() {  # extra podman options...
  # --read-only-tmpfs=false: not even /tmp or /run writable. The seccomp
  # profile is podman's own plus perf_event_open for CAP_PERFMON.
  podman "$@" run --detach --name "$name" --read-only --read-only-tmpfs=false \
    --cap-drop=all --cap-add=CAP_PERFMON --security-opt "seccomp=$out/seccomp.json" \
    --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" \
    --volume "$work/image-config.toml:/etc/pmu-exporter/config.toml:ro" \
    --publish 127.0.0.1::9842 "$tag" >"$work/podman-run.log" 2>&1
}
if [[ -z $podman_reason ]]; then
  started=no
  if podman_run; then
    started=yes
  elif grep -q 'hybrid mode not supported' "$work/podman-run.log" && command -v runc >/dev/null 2>&1; then
    # crun refuses a hybrid cgroup layout whose v2 part has controllers;
    # runc (Debian's runc package) runs there.
    podman rm -f "$name" >/dev/null 2>&1 || true
    runtime_note=" (runtime runc: crun refuses this host's hybrid cgroup layout)"
    podman_run --runtime runc && started=yes
  fi
fi
if [[ -z $podman_reason && $started == yes ]]; then
    port=$(podman port "$name" 9842/tcp | sed 's/.*://')
    pid=$(podman inspect --format '{{.State.Pid}}' "$name")
    [[ $(podman inspect --format '{{.Config.User}}' "$name") == "$kUid:$kUid" ]] ||
      fail "the container does not run as $kUid:$kUid"
    [[ $(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$name") == true ]] ||
      fail "the root filesystem is not read-only"
    cpus=$(scrape_check "http://127.0.0.1:$port/metrics") ||
      { podman logs "$name"; exit 1; }
    read -r uid capeff rss <<<"$(check_process "$pid")"
    [[ $uid == "$kUid" ]] || fail "the daemon runs as UID $uid, not $kUid"
    podman exec --user 0 "$name" /bin/sh -c 'touch /probe' 2>/dev/null && fail "the root filesystem is writable"
    log "podman$runtime_note: per-CPU cpu-clock on $cpus CPUs; UID $uid, CapEff $capeff, no_new_privs off, read-only root; RSS $rss"
    podman stop -t 5 "$name" >/dev/null
    log "passed under podman in $((SECONDS - start)) s"
    exit 0
fi
[[ -n $podman_reason ]] || podman_reason="podman run failed: $(tail -n 3 "$work/podman-run.log" | tr '\n' ' ')"

# --- systemd-nspawn fallback -------------------------------------------------------------
command -v systemd-nspawn >/dev/null 2>&1 || skip "$podman_reason, and systemd-nspawn is not installed"
echo "NOTE: $podman_reason; running the same rootfs under systemd-nspawn instead"
systemd-nspawn --quiet --register=no --keep-unit --directory="$out/rootfs" --read-only \
  --user=pmu-exporter --drop-capability=all --capability=CAP_PERFMON \
  --system-call-filter=perf_event_open --no-new-privileges=no \
  --bind-ro="$work/image-config.toml:/etc/pmu-exporter/config.toml" \
  -- /usr/bin/pmu-exporter --config /etc/pmu-exporter/config.toml >"$work/nspawn-image.log" 2>&1 &
nspawn_pid=$!
cpus=$(scrape_check "http://127.0.0.1:9842/metrics") || { cat "$work/nspawn-image.log"; exit 1; }
log "systemd-nspawn (podman: $podman_reason): per-CPU cpu-clock on $cpus CPUs"
log "passed under systemd-nspawn in $((SECONDS - start)) s"
