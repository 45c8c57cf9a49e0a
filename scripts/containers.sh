#!/usr/bin/env bash
# Build the pipeline's container image (one for CPU and GPU) from containers/spatialdomains/Dockerfile.
#   scripts/containers.sh install          # podman, runc, debootstrap... through apt, as root (idempotent)
#   scripts/containers.sh base             # debootstrap a bookworm base and import it as localhost/bookworm-base:1
#   scripts/containers.sh image            # build localhost/spatialdomains:<version> (on the local base if present)
#   scripts/containers.sh image-if-stale   # build it only when the image was built from other inputs
#   scripts/containers.sh oci-archive FILE # write the image as an OCI archive (for `singularity build`)
# Each step prints one line with its time. Environment: ENGINE (podman|docker), BASE_IMAGE (default: the local
# debootstrap base if present, else debian:bookworm-slim), TORCH_INDEX (extra torch index; empty = PyPI's
# torch), PIP_CERT_FILE (CA bundle pip must trust).
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-podman}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE=localhost/spatialdomains:$VERSION
DOCKERFILE=containers/spatialdomains/Dockerfile
LOCAL_BASE=localhost/bookworm-base:1
ENGINE_OPTS=()
# Machines with hybrid cgroups need runc (crun fails) and ulimits within the host's hard limits.
if [ "$ENGINE" = podman ] && [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then ENGINE_OPTS+=(--runtime runc); fi
BUILD_OPTS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

exists() { $ENGINE image inspect "$1" >/dev/null 2>&1; }
now() { date +%s.%N; }
step() {  # step NAME COMMAND...: run, print one line with the time and the last output line; the log on failure
    local name=$1; shift
    local t0 log rc=0; t0=$(now); log=$(mktemp)
    # in the background, so that `set -e` holds inside the step (bash ignores it in an `if` condition)
    ( "$@" ) >"$log" 2>&1 & wait $! || rc=$?
    if [ $rc -eq 0 ]; then
        printf 'containers: %-28s %7.1f s  %s\n' "$name" "$(awk "BEGIN{print $(now) - $t0}")" "$(tail -n 1 "$log")"
        rm -f "$log"
    else
        printf 'containers: %-28s FAILED\n' "$name"; cat "$log"; rm -f "$log"; exit 1
    fi
}

# What `install` puts on a Debian/Ubuntu host for rootful podman: runc (crun fails on hybrid cgroups),
# netavark, aardvark-dns and iptables (the network of the build's RUN steps: netavark fails without iptables),
# uidmap, fuse-overlayfs and slirp4netns (rootless podman needs them), catatonit (`podman run --init`),
# debootstrap (the base image, where no registry is reachable).
PACKAGES=(podman runc netavark aardvark-dns iptables uidmap fuse-overlayfs slirp4netns catatonit debootstrap)
COMMANDS=(podman runc /usr/lib/podman/netavark /usr/lib/podman/aardvark-dns iptables newuidmap fuse-overlayfs slirp4netns
          catatonit debootstrap)

install_() {
    [ "$ENGINE" = podman ] || { echo "ENGINE=$ENGINE: install it yourself (only podman is installed here)"; return; }
    local missing=() i
    for i in "${!PACKAGES[@]}"; do
        command -v "${COMMANDS[$i]}" >/dev/null || [ -x "${COMMANDS[$i]}" ] || missing+=("${PACKAGES[$i]}")
    done
    if [ ${#missing[@]} -eq 0 ]; then echo "$(podman --version), $(runc --version | head -n1), debootstrap present"; return; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "missing: ${missing[*]}" >&2
        echo "install them as root first: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
        echo "(elsewhere: podman or docker from your distribution; set ENGINE=docker for docker)" >&2
        return 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    echo "installed ${missing[*]}"
}

pip_cert() {
    # The CA bundle the host's pip trusts (a corporate TLS proxy adds its CA there); it is mounted as a
    # build secret for pip only and never stored in the image.
    local cert=${PIP_CERT_FILE:-${PIP_CERT:-$(pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.cert='\(.*\)'$/\1/p" | head -n1)}}
    cert=${cert:-/etc/ssl/certs/ca-certificates.crt}
    if [ -n "$cert" ] && [ -f "$cert" ]; then echo "--secret=id=pipcert,src=$cert"; fi
}

base_() {
    if exists "$LOCAL_BASE"; then echo "$LOCAL_BASE present"; return; fi
    command -v debootstrap >/dev/null || { echo "install debootstrap: scripts/containers.sh install" >&2; return 1; }
    local mirror rootfs
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | $ENGINE import - "$LOCAL_BASE" >/dev/null
    rm -rf "$rootfs"
    echo "imported $LOCAL_BASE from $mirror"
}

# What the image is made from: its Dockerfile, the torch index and the files it copies. Recorded as the image
# label org.spatialdomains.inputs, so a build is skipped when nothing changed.
inputs_hash() {
    {
        cat "$DOCKERFILE"
        echo "TORCH_INDEX=${TORCH_INDEX:-}"
        find pyproject.toml LICENSE requirements/lock.txt src -type f \
            ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
}

image_label() {  # the inputs label of an image (JSON; a Go template would be read as Jinja by nf-core lint)
    $ENGINE image inspect "$1" 2>/dev/null | python3 -c "import json, sys
img = json.load(sys.stdin)[0]
print((img.get('Labels') or img['Config'].get('Labels') or {}).get('org.spatialdomains.inputs', ''))"
}

size_of() { $ENGINE image inspect "$1" | python3 -c "import json, sys; print(f'{json.load(sys.stdin)[0][\"Size\"] / 1e9:.2f} GB')"; }

image_() {
    local base_image=${BASE_IMAGE:-}
    if [ -z "$base_image" ]; then
        if exists "$LOCAL_BASE"; then base_image=$LOCAL_BASE; else base_image=debian:bookworm-slim; fi
    fi
    # podman writes OCI images by default; the docker format keeps the image's SHELL (Docker builds it anyway)
    if [ "$ENGINE" = podman ]; then ENGINE_OPTS+=(build --format docker); else ENGINE_OPTS+=(build); fi
    # shellcheck disable=SC2046
    $ENGINE "${ENGINE_OPTS[@]}" "${BUILD_OPTS[@]}" $(pip_cert) \
        --build-arg BASE="$base_image" --build-arg TORCH_INDEX="${TORCH_INDEX:-}" \
        --label "org.spatialdomains.inputs=$(inputs_hash)" -f "$DOCKERFILE" -t "$IMAGE" .
    # the layers of the previous build of this tag, now untagged
    $ENGINE image prune -f --filter label=org.spatialdomains.inputs >/dev/null
    echo "built $IMAGE ($(size_of "$IMAGE"), inputs $(inputs_hash))"
}

image_current() {
    local want have
    want=$(inputs_hash)
    exists "$IMAGE" || { echo "$IMAGE missing"; return 1; }
    have=$(image_label "$IMAGE" || true)
    [ "$have" = "$want" ] && { echo "$IMAGE is current (inputs $want, $(size_of "$IMAGE")): not rebuilt"; return; }
    echo "$IMAGE was built from other inputs (${have:-unlabelled}, now $want)"
    return 1
}

image_if_stale() {
    local why
    if why=$(image_current); then step "image $VERSION" echo "$why"; return; fi
    echo "containers: $why: building"
    build
}

build() {  # the local base first, unless BASE_IMAGE names one (e.g. debian:bookworm-slim where a registry is reachable)
    [ -n "${BASE_IMAGE:-}" ] || step "base image (debootstrap)" base_
    step "image $VERSION (build)" image_
}

oci_archive() {
    local out=${1:?usage: scripts/containers.sh oci-archive FILE}
    [ "$ENGINE" = podman ] || { echo "oci-archive needs podman (Docker: singularity build ... docker-daemon://$IMAGE)" >&2; return 1; }
    rm -f "$out"
    $ENGINE save --format oci-archive -o "$out" "$IMAGE"
    echo "wrote $out ($(du -h "$out" | cut -f1)) from $IMAGE"
}

case "${1:-}" in
    install) step "install (apt)" install_ ;;
    base) step "base image (debootstrap)" base_ ;;
    image) build ;;
    image-if-stale) image_if_stale ;;
    oci-archive) step "oci archive" oci_archive "${2:-}" ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
