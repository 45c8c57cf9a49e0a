#!/usr/bin/env bash
# Build the pipeline's container images with podman (or docker) from the repository's Dockerfiles.
#   scripts/containers.sh base        # debootstrap a bookworm base and import it as localhost/bookworm-base:1
#   scripts/containers.sh cpu         # build spatialdomains-cpu (on the local base when no registry is reachable)
#   scripts/containers.sh gpu         # build spatialdomains-gpu (needs the nvidia/cuda base image pulled first)
#   scripts/containers.sh cpu-if-stale  # build spatialdomains-cpu only when the local image was built from other inputs
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

# What the CPU image is made from: its Dockerfile, the torch index and the files it copies. Recorded as the
# image label org.spatialdomains.inputs, so a build can be skipped when nothing changed.
inputs_hash() {
    {
        cat containers/cpu/Dockerfile
        echo "TORCH_INDEX=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
        find pyproject.toml README.md LICENSE requirements/lock.txt src -type f \
            ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
}

# A field of `$ENGINE image inspect` (JSON; no Go template, which nf-core lint reads as a Jinja string)
image_field() {
    $ENGINE image inspect "$1" 2>/dev/null | python3 -c "import json, sys
img = json.load(sys.stdin)[0]
print({'created': lambda: img['Created'], 'inputs': lambda: (img.get('Labels') or img['Config'].get('Labels') or {}).get('org.spatialdomains.inputs', '')}['$2']())"
}

# An image without the label (built before it existed): the same files inside it as here, and built after the
# Dockerfile last changed?
unlabelled_image_is_current() {
    local tag=$1 created dockerfile_mtime files
    created=$(date -d "$(image_field "$tag" created)" +%s) || return 1
    dockerfile_mtime=$(stat -c %Y containers/cpu/Dockerfile)
    [ "$dockerfile_mtime" -lt "$created" ] || return 1
    files='find pyproject.toml README.md LICENSE requirements/lock.txt src -type f ! -path "*/__pycache__/*" ! -name "*.pyc" ! -path "*.egg-info/*" | LC_ALL=C sort | xargs sha256sum'
    diff <($ENGINE "${ENGINE_OPTS[@]}" run --rm "${BUILD_OPTS[@]}" -w /opt/spatialdomains "$tag" bash -c "$files" 2>/dev/null) \
         <(bash -c "$files") >/dev/null
}

cpu_if_stale() {
    local tag="localhost/spatialdomains-cpu:$VERSION" want have
    want=$(inputs_hash)
    if $ENGINE image exists "$tag" 2>/dev/null; then
        have=$(image_field "$tag" inputs || true)
        if [ "$have" = "$want" ]; then echo "$tag is current (inputs $want): not rebuilt"; return; fi
        if [ -z "$have" ] && unlabelled_image_is_current "$tag"; then
            echo "$tag (no inputs label) holds the current src, lock and pyproject: not rebuilt"; return
        fi
        echo "$tag was built from other inputs (${have:-unlabelled}, now $want): rebuilding"
    fi
    base
    cpu
}

cpu() {
    local base_image=${CPU_BASE:-}
    if [ -z "$base_image" ]; then
        if $ENGINE image exists "$LOCAL_BASE" 2>/dev/null; then base_image=$LOCAL_BASE; else base_image=debian:bookworm-slim; fi
    fi
    # shellcheck disable=SC2046
    $ENGINE "${ENGINE_OPTS[@]}" build --format docker "${BUILD_OPTS[@]}" $(pip_cert) \
        --build-arg BASE="$base_image" --build-arg TORCH_INDEX="${TORCH_INDEX-https://download.pytorch.org/whl/cpu}" \
        --label "org.spatialdomains.inputs=$(inputs_hash)" \
        -f containers/cpu/Dockerfile -t "localhost/spatialdomains-cpu:$VERSION" .
}

gpu() {
    # shellcheck disable=SC2046
    $ENGINE "${ENGINE_OPTS[@]}" build --format docker "${BUILD_OPTS[@]}" $(pip_cert) \
        -f containers/gpu/Dockerfile -t "localhost/spatialdomains-gpu:$VERSION" .
}

for target in "$@"; do "${target//-/_}"; done
