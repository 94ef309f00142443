#!/usr/bin/env bash
# Build the runtime image (manifests/runtime/Dockerfile) with buildah where no registry can be
# reached: its base is Debian bookworm made by debootstrap (kept in buildah's storage, made once).
# Prints the image's name.
#
#   hack/runtime-image.sh [IMAGE]     # default localhost/zeroserve-runtime:ci
#
# Needs root, apt (Debian 12) and Debian's archive; about a minute for the base, a few for the
# image (PyPI downloads). The host's CA bundle is lent to pip in the build, for networks that
# intercept TLS.
set -euo pipefail

base=localhost/zeroserve-base:bookworm
image=${1:-localhost/zeroserve-runtime:ci}
root=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "runtime-image: $*" >&2; }

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  log "installing buildah and debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq buildah debootstrap >&2
fi

if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  log "making the base image: debootstrap of Debian bookworm with python3"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$work/rootfs" http://deb.debian.org/debian >&2
  tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
  container=$(buildah from scratch)
  buildah add --quiet "$container" "$work/rootfs.tar" / >&2
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$container"
  buildah commit --quiet "$container" "$base" >/dev/null
  buildah rm "$container" >/dev/null
fi

bundle=/etc/ssl/certs/ca-certificates.crt
lend_ca=()
if [[ -f $bundle ]]; then
  lend_ca=(--build-arg "PIP_CERT=$bundle" --volume "$bundle:$bundle:ro")
fi
log "building $image from manifests/runtime/Dockerfile"
buildah bud --isolation chroot --layers --quiet -f "$root/manifests/runtime/Dockerfile" \
  --build-arg "BASE=$base" --build-arg BUILD_PACKAGES= "${lend_ca[@]}" \
  -t "$image" "$root" >&2
echo "$image"
