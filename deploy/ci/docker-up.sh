#!/usr/bin/env bash
# Make a Docker engine and a local Debian base image available, for CI and sandboxes without a registry.
#
#   deploy/ci/docker-up.sh          # prints the base image name on its last line of stdout
#
# 1. Docker: uses a running engine; otherwise installs Debian's docker.io (+ debootstrap) when dockerd is
#    missing, and starts `dockerd --iptables=false --bridge=none` (containers then use host networking, see
#    deploy/compose.host.yml) on overlay2, falling back to vfs where overlay mounts are not permitted.
# 2. Base image: Debian bookworm minbase + python3 + python3-venv + ca-certificates, made with debootstrap and
#    `docker import`. The root filesystem tarball is cached under $PIXELSERVE_CACHE_DIR, so later runs only
#    import it. The host's locally added CAs (/usr/local/share/ca-certificates, the Debian convention) are
#    trusted inside it, so pip and apt work behind the same TLS-intercepting proxy as the host.
#
# Environment: PIXELSERVE_CACHE_DIR (default ~/.cache/pixelserve), PIXELSERVE_BASE_IMAGE (default
# pixelserve-base:bookworm), DEBIAN_MIRROR (default: the host's apt mirror, else deb.debian.org).
set -euo pipefail

CACHE_DIR="${PIXELSERVE_CACHE_DIR:-$HOME/.cache/pixelserve}/docker"
BASE_IMAGE="${PIXELSERVE_BASE_IMAGE:-pixelserve-base:bookworm}"
BASE_VERSION=1  # bump when the package list or the trimming below changes
BASE_TARBALL="$CACHE_DIR/debian-bookworm-python3-v$BASE_VERSION.tar"
mkdir -p "$CACHE_DIR"

log() { echo "docker-up: $*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

install_packages() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "$@" >&2
}

engine_up() { docker info >/dev/null 2>&1; }

start_dockerd() {
  local driver="$1" pid
  log "starting dockerd (storage driver $driver), log in $CACHE_DIR/dockerd.log"
  as_root setsid dockerd --storage-driver="$driver" --iptables=false --bridge=none \
    >"$CACHE_DIR/dockerd.log" 2>&1 < /dev/null &
  pid=$!
  for _ in $(seq 1 60); do
    if engine_up; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.5
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  tail -n 5 "$CACHE_DIR/dockerd.log" >&2 || true
  return 1
}

ensure_engine() {
  if engine_up; then return 0; fi
  command -v dockerd >/dev/null 2>&1 || install_packages docker.io
  start_dockerd overlay2 || start_dockerd vfs || {
    log "dockerd did not start with overlay2 or vfs (missing privileges?); see $CACHE_DIR/dockerd.log"
    exit 1
  }
}

host_mirror() {
  local uri
  uri="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list \
    | grep -v security | grep -oE 'https?://[^ ]+' | head -n 1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

build_base_tarball() {
  command -v debootstrap >/dev/null 2>&1 || install_packages debootstrap
  local root mirror
  root="$(mktemp -d)"
  mirror="${DEBIAN_MIRROR:-$(host_mirror)}"
  log "debootstrap bookworm from $mirror (once; cached as $BASE_TARBALL)"
  as_root debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror" >&2
  as_root rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    as_root cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    as_root chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  as_root tar -C "$root" -cf "$BASE_TARBALL.tmp" .
  as_root rm -rf "$root"
  mv "$BASE_TARBALL.tmp" "$BASE_TARBALL"
}

ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then return 0; fi
  [ -s "$BASE_TARBALL" ] || build_base_tarball
  log "importing $BASE_TARBALL as $BASE_IMAGE"
  # pip reads its CA bundle from PIP_CERT: the system bundle, which now includes the host's local CAs.
  docker import --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' --change 'CMD ["/bin/bash"]' \
    "$BASE_TARBALL" "$BASE_IMAGE" >/dev/null
}

ensure_engine
ensure_base_image
echo "$BASE_IMAGE"
