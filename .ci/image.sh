#!/usr/bin/env bash
# Build the Ringfence image with podman, no Docker daemon and no registry needed: the base is a
# Debian bookworm bootstrapped from this machine's own apt mirror and imported locally.
#
#   .ci/image.sh            # -> localhost/ringfence:dev, and its SBOM build/sbom-image.cdx.json
#   IMAGE=ringfence:x .ci/image.sh
#
# Idempotent. The first run installs podman & co. with apt-get, bootstraps the base into
# .tools/image/ (git-ignored) and imports it; later runs reuse all of that and only rebuild
# the layers whose inputs changed. Run podman against the same engine settings with
#   CONTAINERS_CONF=.tools/image/containers.conf podman ...
#
# Exit status: 0 built; 77 this machine cannot build here at all (the reason is on stderr;
# tests turn it into a skip); anything else is a real failure.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=$REPO/.tools/image
SUITE=bookworm
INCLUDE=python3,python3-venv,python3-pip,ca-certificates
BASE=localhost/debian-py:$SUITE
IMAGE=${IMAGE:-ringfence:dev}
# Bump when the way the base is made changes, so stale caches are rebuilt.
RECIPE=1
SPEC="recipe=$RECIPE suite=$SUITE include=$INCLUDE"
ROOTFS=$CACHE/rootfs-$SUITE
STAMP=$ROOTFS.ok
# TLS-inspecting networks re-sign PyPI's certificate with a CA only the host trusts.
HOST_CA=/etc/ssl/certs/ca-certificates.crt
# What the steps below run; buildah, uidmap and fuse-overlayfs are only for rootless use.
PACKAGES=(podman runc netavark iptables debootstrap debian-archive-keyring)

log() { printf 'image.sh: %s\n' "$*" >&2; }
impossible() {
  log "cannot build the image on this machine: $*"
  exit 77
}

require_root() {
  # Rootful podman and debootstrap (mknod, chroot) need root; rootless podman would also
  # need subuid ranges and a rootless-owned base, which this script does not set up.
  [ "$(id -u)" = 0 ] || impossible "it must run as root (uid $(id -u)): debootstrap and" \
    "rootful podman need it"
}

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  command -v apt-get >/dev/null || impossible "missing ${missing[*]} and there is no apt-get"
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
}

# The first http(s)/file URI that apt uses for "$SUITE", from one-line and deb822 sources.
apt_mirror() {
  local f
  shopt -s nullglob
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) print $i
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        delete v; key = ""
        for (j = 1; j <= NF; j++) {
          line = $j
          if (line ~ /^#/) continue
          if (line ~ /^[ \t]/ && key != "") { v[key] = v[key] " " line; continue }
          p = index(line, ":"); if (!p) continue
          key = tolower(substr(line, 1, p - 1)); v[key] = substr(line, p + 1)
        }
        if (tolower(v["enabled"]) ~ /no/ || v["types"] !~ /(^|[ \t])deb([ \t]|$)/) next
        if ((" " v["suites"] " ") !~ ("[ \t]" suite "[ \t]")) next
        n = split(v["uris"], uris, /[ \t]+/)
        for (k = 1; k <= n; k++) if (uris[k] != "") print uris[k]
      }' "$f"
  done
  shopt -u nullglob
}

pick_mirror() {
  local uri
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    printf '%s\n' "$DEBIAN_MIRROR"
    return
  fi
  while read -r uri; do
    case $uri in http://* | https://* | file:/*)
      printf '%s\n' "$uri"
      return
      ;;
    esac
  done < <(apt_mirror)
  impossible "no http(s) or file mirror for $SUITE in /etc/apt/sources.list*" \
    "(set DEBIAN_MIRROR=URL to choose one)"
}

bootstrap_rootfs() {
  if [ -f "$STAMP" ] && [ "$(head -n1 "$STAMP")" = "$SPEC" ] && [ -d "$ROOTFS" ]; then
    return
  fi
  local mirror partial=$ROOTFS.partial start=$SECONDS
  mirror=$(pick_mirror)
  log "bootstrapping $SUITE ($INCLUDE) from $mirror into ${ROOTFS#"$REPO"/}"
  rm -rf "$partial" "$ROOTFS" "$STAMP"
  # A failed run leaves only *.partial, which the next run discards.
  debootstrap --variant=minbase --include="$INCLUDE" \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$SUITE" "$partial" "$mirror" >"$CACHE/debootstrap.log" 2>&1 || {
    tail -n 20 "$CACHE/debootstrap.log" >&2
    log "debootstrap failed; full log in ${CACHE#"$REPO"/}/debootstrap.log"
    exit 1
  }
  # Downloaded packages and indexes are dead weight in an image, and the host's resolver
  # and name do not belong in it (podman provides both at run time).
  rm -rf "$partial"/var/cache/apt/archives/*.deb "$partial"/var/lib/apt/lists/*
  : >"$partial/etc/resolv.conf"
  : >"$partial/etc/hostname"
  mv "$partial" "$ROOTFS"
  printf '%s\n%s\n' "$SPEC" "bootstrapped=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$STAMP"
  log "bootstrap took $((SECONDS - start))s"
}

write_containers_conf() {
  # podman asks for nofile=1048576 and nproc=4194304 in every container; without
  # CAP_SYS_RESOURCE the OCI runtime cannot raise limits past the host's hard limits and
  # fails with "error setting rlimit type 7 (then 6): operation not permitted". podman itself
  # lowers its own nproc to 32768 before starting the runtime, hence that cap.
  local nofile nproc
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ] && nofile=1048576
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
  cat >"$CACHE/containers.conf.new" <<EOF
# Written by .ci/image.sh for this machine's limits; use with CONTAINERS_CONF=<this file>.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
# The kernel here mounts cgroup v1 and v2 side by side, which runc handles; pin it so that a
# crun installed later is not picked up instead.
runtime = "runc"
EOF
  mv "$CACHE/containers.conf.new" "$CACHE/containers.conf"
  export CONTAINERS_CONF=$CACHE/containers.conf
}

import_base() {
  local have want
  have=$(podman image inspect --format '{{index .Labels "ringfence.base"}}' "$BASE" 2>/dev/null ||
    true)
  # The label is a digest of the stamp, so a re-bootstrapped rootfs is imported again.
  want=$(sha256sum <"$STAMP" | cut -c1-16)
  [ "$have" = "$want" ] && return
  log "importing ${ROOTFS#"$REPO"/} as $BASE"
  # Numeric owners: the image must keep the rootfs's own uids, not the host's name mapping.
  tar --numeric-owner -C "$ROOTFS" -c . |
    podman import --change "LABEL ringfence.base=$want" - "$BASE" >/dev/null
}

build_image() {
  local version revision created replaced digest start=$SECONDS
  # The base by digest, as the Dockerfile's default is: what was tested is what is built on.
  digest=$(podman image inspect --format '{{.Digest}}' "$BASE")
  [[ $digest == sha256:* ]] || { log "no digest for $BASE"; exit 1; }
  local -a args=(--pull=never --format docker --build-arg "BASE_IMAGE=${BASE%%:*}@$digest" -t "$IMAGE")
  version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n1)
  args+=(--build-arg "VERSION=${version:-0.0.0}")
  if git rev-parse --git-dir >/dev/null 2>&1; then
    revision=$(git rev-parse HEAD)
    [ -z "$(git status --porcelain -- pyproject.toml requirements.lock requirements-build.lock \
      README.md dsl server rules)" ] ||
      revision+=-dirty
    # The commit time rather than now: rebuilding the same tree reuses every cached layer.
    created=$(git log -1 --format=%cI)
    args+=(--build-arg "REVISION=$revision" --build-arg "CREATED=$created")
  fi
  # Build-time only (RUN steps see it, layers do not keep it): the host's CAs for pip.
  [ -r "$HOST_CA" ] && args+=(-v "$HOST_CA:$HOST_CA:ro")
  replaced=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  log "building $IMAGE"
  # --format docker keeps the HEALTHCHECK, which the OCI format drops.
  podman build "${args[@]}" .
  log "build took $((SECONDS - start))s"
  # The image's own SBOM (OS packages, interpreter, venv; written by its last build step).
  mkdir -p "$REPO/build"
  podman run --rm --network=none --entrypoint /bin/cat "$IMAGE" /usr/share/doc/ringfence/sbom.cdx.json \
    >"$REPO/build/sbom-image.cdx.json.new"
  mv "$REPO/build/sbom-image.cdx.json.new" "$REPO/build/sbom-image.cdx.json"
  log "SBOM of the image: build/sbom-image.cdx.json"
  # Drop the image this one replaced (with its own untagged layers), or every source change
  # leaves ~100 MB behind. Never `podman image prune`: it also deletes the layer cache, and
  # other projects' images. Still in use by a container: kept.
  if [ -n "$replaced" ] && [ "$replaced" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]
  then
    podman rmi "$replaced" >/dev/null 2>&1 || log "kept the replaced image ${replaced:0:12} (in use)"
  fi
}

main() {
  local start=$SECONDS
  require_root
  install_packages
  mkdir -p "$CACHE"
  # One run at a time: two concurrent bootstraps into the same directory would corrupt it.
  exec 9>"$CACHE/.lock"
  flock 9
  write_containers_conf
  bootstrap_rootfs
  import_base
  build_image
  log "done in $((SECONDS - start))s: $IMAGE (CONTAINERS_CONF=${CONTAINERS_CONF#"$REPO"/})"
}

main "$@"
