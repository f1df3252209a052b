#!/bin/sh
# Installs the Debian 12 packages pmu-exporter needs to build, run and test,
# plus any packages named as arguments (`make bench` adds wrk and
# prometheus-node-exporter). Idempotent: does nothing (and needs no root)
# when all are present.
set -eu

PACKAGES="cmake make g++ pkg-config git libpfm4-dev libspdlog-dev prometheus-cpp-dev
libtomlplusplus-dev libsystemd-dev libgtest-dev libgmock-dev libbenchmark-dev
libcrypt-dev prometheus curl openssl clang-format g++-aarch64-linux-gnu libssl-dev zlib1g-dev dpkg-dev
systemd man-db python3 clang llvm libbpf-dev bpftool libelf-dev
lintian python3-yaml systemd-container debootstrap mmdebstrap podman runc libcap2-bin"

missing=""
for p in $PACKAGES "$@"; do
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install:$missing" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
