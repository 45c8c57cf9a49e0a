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
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    # munge: a private key and socket in the state dir, run as the munge user
    chown munge: "$dir/munge"; chmod 700 "$dir/munge"
    mungekey --create --force --keyfile "$dir/munge/munge.key" >/dev/null 2>&1 \
        || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 2>/dev/null
    chown munge: "$dir/munge/munge.key"; chmod 400 "$dir/munge/munge.key"
    mkdir -p /run/munge; chown munge: /run/munge
    su -s /bin/sh munge -c "/usr/sbin/munged --key-file=$dir/munge/munge.key --pid-file=$dir/munge/munged.pid \
        --socket=/run/munge/munge.socket.2 --log-file=$dir/munge/munged.log --seed-file=$dir/munge/seed --force"
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
    local pidfile pid
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
    echo "slurm stopped ($dir)"
}

status() { SLURM_CONF=$dir/slurm.conf sinfo; SLURM_CONF=$dir/slurm.conf squeue; }

"$cmd"
