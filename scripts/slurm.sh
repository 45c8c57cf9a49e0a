#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests: start / stop / status.
#   scripts/slurm.sh start DIR   # installs slurm-wlm + munge when root and missing; state in DIR
#   scripts/slurm.sh stop DIR    # stops exactly the daemons it started (by their PID files), never by name
# Exports for the caller: SLURM_CONF=DIR/slurm.conf (sbatch/squeue read it).
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:?start|stop|status}; dir=${2:?state dir}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

install() {
    if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge
    else
        echo "slurm-wlm and munge are missing: install them (apt-get install slurm-wlm munge)" >&2; exit 1
    fi
}

start() {
    install
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 85 / 100 ))
    mkdir -p "$dir/state" "$dir/spool"
    # munge: a private key, pid and log in a folder of its own under /tmp, run as the munge user. (Not under
    # DIR: munged runs as `munge` and cannot traverse private parents such as pytest's 0700 tmp dirs.)
    local mdir; mdir=$(mktemp -d /tmp/spatialdomains-munge.XXXXXX)
    echo "$mdir" > "$dir/munge.dir"
    chown munge: "$mdir"; chmod 700 "$mdir"
    mungekey --create --force --keyfile "$mdir/munge.key" >/dev/null 2>&1 \
        || dd if=/dev/urandom of="$mdir/munge.key" bs=1 count=1024 2>/dev/null
    chown munge: "$mdir/munge.key"; chmod 400 "$mdir/munge.key"
    mkdir -p /run/munge; chown munge: /run/munge
    su -s /bin/sh munge -c "/usr/sbin/munged --key-file=$mdir/munge.key --pid-file=$mdir/munged.pid \
        --socket=/run/munge/munge.socket.2 --log-file=$mdir/munged.log --seed-file=$mdir/seed --force"
    # free ports for this cluster (a second cluster on the machine must not collide)
    local ports; ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
    sed -e "s#@HOST@#$host#g" -e "s#@CPUS@#$cpus#g" -e "s#@MEM@#$mem#g" -e "s#@STATE@#$dir#g" \
        -e "s#@CTLD_PORT@#${ports% *}#" -e "s#@SLURMD_PORT@#${ports#* }#" tests/slurm/slurm.conf.in > "$dir/slurm.conf"
    export SLURM_CONF=$dir/slurm.conf
    slurmctld -f "$dir/slurm.conf" -i >/dev/null 2>&1
    slurmd -f "$dir/slurm.conf" >/dev/null 2>&1
    for _ in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^idle'; then echo "slurm up: $(sinfo -h -o '%P %D %T %c')"; return; fi
        sleep 0.5
    done
    echo "slurm did not reach idle; logs in $dir" >&2; tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
    stop; exit 1
}

stop() {
    local pidfile pid mdir=""
    [ -f "$dir/munge.dir" ] && mdir=$(cat "$dir/munge.dir")
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" ${mdir:+"$mdir/munged.pid"}; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
    if [ -n "$mdir" ]; then rm -rf "$mdir" "$dir/munge.dir"; fi
    echo "slurm stopped ($dir)"
}

status() { SLURM_CONF=$dir/slurm.conf sinfo; SLURM_CONF=$dir/slurm.conf squeue; }

"$cmd"
