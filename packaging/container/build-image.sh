#!/bin/bash
# Builds the pmu-exporter container image from Debian packages only, with no
# registry: mmdebstrap makes a minimal rootfs of this host's Debian release
# (the mirror and suites apt is configured with) holding the built .deb and
# its dependencies; podman imports it as an image.
#
#   build-image.sh DEB OUT_DIR [IMAGE]      (IMAGE default: localhost/pmu-exporter:VERSION)
#
# OUT_DIR receives rootfs/ (the tree, also usable with systemd-nspawn),
# rootfs.tar (with the file capability), and seccomp.json: podman's default
# seccomp profile with perf_event_open admitted for CAP_PERFMON (podman 4.3's
# own admits it only with CAP_SYS_ADMIN). When podman is installed, the image
# is imported as IMAGE.
#
# PMU_IMAGE_APT_CACHE=DIR keeps the downloaded .debs between builds.
#
# The image: the daemon runs as the unprivileged user pmu-exporter
# (65532:65532); /usr/bin/pmu-exporter carries the file capability
# cap_perfmon=ep, so it counts CPU-wide events without root as long as the
# runtime leaves CAP_PERFMON in the bounding set (podman --cap-add, Kubernetes
# capabilities.add: [PERFMON]) and does not set no_new_privs. It expects its
# configuration mounted at /etc/pmu-exporter/config.toml and runs with a
# read-only root filesystem (it writes nothing).
set -euo pipefail

deb=$(realpath "${1:?usage: build-image.sh DEB OUT_DIR [IMAGE]}")
out=${2:?usage: build-image.sh DEB OUT_DIR [IMAGE]}
version=$(dpkg-deb -f "$deb" Version)
image=${3:-localhost/pmu-exporter:$version}
readonly kUid=65532

for tool in mmdebstrap setcap dpkg-deb; do
  command -v "$tool" >/dev/null 2>&1 ||
    { echo "build-image: $tool is not installed (apt-get install mmdebstrap libcap2-bin)" >&2; exit 77; }
done
[[ $(id -u) -eq 0 ]] || { echo "build-image: needs root (mmdebstrap root mode, setcap)" >&2; exit 77; }

. /etc/os-release
suite=${VERSION_CODENAME:?}
# The host's apt sources (release, updates, security), one line each.
mapfile -t sources < <(apt-get indextargets --format 'deb $(REPO_URI) $(RELEASE) $(COMPONENT)' \
                         'Created-By: Packages' | sort -u)
[[ ${#sources[@]} -gt 0 ]] || { echo "build-image: apt has no sources" >&2; exit 1; }

# A build killed half-way can leave /proc or /sys mounted in the old tree:
# never descend into a mount while clearing it.
if findmnt -rn -o TARGET | grep -q "^$(realpath -m "$out/rootfs")/"; then
  echo "build-image: something is mounted below $out/rootfs; unmount it first" >&2
  exit 1
fi
rm -rf --one-file-system "$out/rootfs" "$out/rootfs.tar"
mkdir -p "$out"
cache_hooks=()
if [[ -n ${PMU_IMAGE_APT_CACHE:-} ]]; then
  mkdir -p "$PMU_IMAGE_APT_CACHE"
  cache_hooks=(
    --skip=essential/unlink
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"'
    --setup-hook="sync-in $PMU_IMAGE_APT_CACHE /var/cache/apt/archives"
    --customize-hook="sync-out /var/cache/apt/archives $PMU_IMAGE_APT_CACHE"
  )
fi
# essential: Essential:yes packages only (no apt, no init); the package and
# its dependencies on top. Documentation and locales are left out but for
# the copyright files.
# dpkg runs chrooted: the .deb named by --include must exist at the same
# path inside the rootfs while it installs; a directory under /tmp holds it
# on both sides.
staging=$(mktemp -d /tmp/pmu-exporter-image.XXXXXX)
trap 'rm -rf "$staging"' EXIT
cp "$deb" "$staging/"
staged=$staging/$(basename "$deb")
mmdebstrap --variant=essential --mode=root --format=directory \
  --include="$staged" \
  --setup-hook="mkdir -p \"\$1$staging\" && cp \"$staged\" \"\$1$staging/\"" \
  --customize-hook="rm -rf \"\$1$staging\"" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook="echo 'pmu-exporter:x:$kUid:$kUid:pmu-exporter:/nonexistent:/usr/sbin/nologin' >>\"\$1/etc/passwd\"" \
  --customize-hook="echo 'pmu-exporter:x:$kUid:' >>\"\$1/etc/group\"" \
  --customize-hook='setcap cap_perfmon=ep "$1/usr/bin/pmu-exporter"' \
  "${cache_hooks[@]}" \
  --customize-hook='rm -rf "$1/var/log/"*' \
  "$suite" "$out/rootfs" "${sources[@]}"

getcap "$out/rootfs/usr/bin/pmu-exporter" | grep -q cap_perfmon ||
  { echo "build-image: the file capability did not stick" >&2; exit 1; }
tar --create --file="$out/rootfs.tar" --directory="$out/rootfs" --numeric-owner \
  --xattrs --xattrs-include='security.capability' .

profile=/usr/share/containers/seccomp.json
if [[ -f $profile ]]; then
  python3 - "$profile" "$out/seccomp.json" <<'PY'
import json, sys
profile = json.load(open(sys.argv[1]))
rules = profile["syscalls"]
if not any("perf_event_open" in r["names"] and "CAP_PERFMON" in r.get("includes", {}).get("caps", [])
           for r in rules):
    rules.append({"names": ["perf_event_open"], "action": "SCMP_ACT_ALLOW",
                  "includes": {"caps": ["CAP_PERFMON"]}, "excludes": {}})
    # The rule denying it to containers without CAP_SYS_ADMIN must not
    # deny it to those holding CAP_PERFMON.
    for r in rules:
        if "perf_event_open" in r["names"] and r["action"] == "SCMP_ACT_ERRNO":
            r.setdefault("excludes", {}).setdefault("caps", []).append("CAP_PERFMON")
json.dump(profile, open(sys.argv[2], "w"), indent=1)
PY
fi

if command -v podman >/dev/null 2>&1; then
  podman import --quiet \
    --change "USER $kUid:$kUid" \
    --change 'ENTRYPOINT ["/usr/bin/pmu-exporter"]' \
    --change 'CMD ["--config", "/etc/pmu-exporter/config.toml"]' \
    --change 'EXPOSE 9842/tcp' \
    --change "LABEL org.opencontainers.image.title=pmu-exporter" \
    --change "LABEL org.opencontainers.image.version=$version" \
    --change "LABEL org.opencontainers.image.licenses=Apache-2.0" \
    "$out/rootfs.tar" "$image" >/dev/null
  echo "build-image: imported $image ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
else
  echo "build-image: podman is not installed; rootfs.tar is ready for 'podman import' or 'buildah'"
fi
