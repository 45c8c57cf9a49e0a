#!/usr/bin/env bash
# Build the pipeline's container images with podman (or docker) from the repository's Dockerfiles.
#   scripts/containers.sh base        # debootstrap a bookworm base and import it as localhost/bookworm-base:1
#   scripts/containers.sh cpu         # build spatialdomains-cpu (on the local base when no registry is reachable)
#   scripts/containers.sh gpu         # build spatialdomains-gpu (needs the nvidia/cuda base image pulled first)
# Environment: ENGINE (podman|docker), CPU_BASE (default: the local debootstrap base if present, else
# debian:bookworm-slim), TORCH_INDEX (empty = PyPI's torch), PIP_CERT_FILE (CA bundle pip must trust).
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-podman}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
LOCAL_BASE=localhost/bookworm-base:1
ENGINE_OPTS=()
# Machines with hybrid cgroups need runc (crun fails) and ulimits within the host's hard limits.
if [ "$ENGINE" = podman ] && [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then ENGINE_OPTS+=(--runtime runc); fi
BUILD_OPTS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

pip_cert() {
    # The CA bundle the host's pip trusts (a corporate TLS proxy adds its CA there); it is mounted as a
    # build secret for pip only and never stored in the image.
    local cert=${PIP_CERT_FILE:-${PIP_CERT:-$(pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.cert='\(.*\)'$/\1/p" | head -n1)}}
    cert=${cert:-/etc/ssl/certs/ca-certificates.crt}
    if [ -n "$cert" ] && [ -f "$cert" ]; then echo "--secret=id=pipcert,src=$cert"; fi
}

base() {
    if $ENGINE image exists "$LOCAL_BASE" 2>/dev/null; then echo "$LOCAL_BASE present"; return; fi
    command -v debootstrap >/dev/null || { echo "install debootstrap (apt-get install debootstrap)" >&2; exit 1; }
    local mirror rootfs
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | $ENGINE import - "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs"
    echo "imported $LOCAL_BASE"
}

cpu() {
    local base_image=${CPU_BASE:-}
    if [ -z "$base_image" ]; then
        if $ENGINE image exists "$LOCAL_BASE" 2>/dev/null; then base_image=$LOCAL_BASE; else base_image=debian:bookworm-slim; fi
    fi
    # shellcheck disable=SC2046
    $ENGINE "${ENGINE_OPTS[@]}" build --format docker "${BUILD_OPTS[@]}" $(pip_cert) \
        --build-arg BASE="$base_image" --build-arg TORCH_INDEX="${TORCH_INDEX-https://download.pytorch.org/whl/cpu}" \
        -f containers/cpu/Dockerfile -t "localhost/spatialdomains-cpu:$VERSION" .
}

gpu() {
    # shellcheck disable=SC2046
    $ENGINE "${ENGINE_OPTS[@]}" build --format docker "${BUILD_OPTS[@]}" $(pip_cert) \
        -f containers/gpu/Dockerfile -t "localhost/spatialdomains-gpu:$VERSION" .
}

for target in "$@"; do "$target"; done
