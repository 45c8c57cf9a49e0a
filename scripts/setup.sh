#!/usr/bin/env bash
# One-command, idempotent setup: system packages (R + mclust, Java, Maven), the Python venv, Nextflow.
# Each step prints one line with its time. A second run does no network work when nothing changed:
# the venv and the Nextflow lib/ carry stamps keyed on the files they were built from.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$ROOT/.venv}
NXF_PIN=$(sed -n 's:.*<nextflow.version>\(.*\)</nextflow.version>.*:\1:p' tools/nextflow/pom.xml)

now() { date +%s.%N; }
step() {  # step NAME COMMAND...: run quietly, print one line with the time, show the log on failure
    local name=$1; shift
    local t0 log; t0=$(now); log=$(mktemp)
    if "$@" >"$log" 2>&1; then
        printf 'setup: %-34s %6.1f s  %s\n' "$name" "$(awk "BEGIN{print $(now) - $t0}")" "$(tail -n 1 "$log")"
        rm -f "$log"
    else
        printf 'setup: %-34s FAILED\n' "$name"; cat "$log"; rm -f "$log"; exit 1
    fi
}
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_install() {
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

system_packages() {
    local missing=() optional=()
    Rscript -e 'suppressMessages(library(mclust))' >/dev/null 2>&1 || missing+=(r-base-core r-base-dev r-cran-mclust)
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
    # headless Chromium renders the HTML report in the tests; users do not need it
    command -v chromium >/dev/null || optional+=(chromium)
    if [ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ]; then
        echo "R $(Rscript -e 'cat(R.version$major, R.version$minor, sep=".")' 2>/dev/null), mclust, Java, Maven, Chromium present"
        return
    fi
    if can_apt; then
        apt_install "${missing[@]}" "${optional[@]}"
        echo "installed ${missing[*]} ${optional[*]}"
    elif [ ${#missing[@]} -gt 0 ]; then
        echo "missing system packages: ${missing[*]}" >&2
        echo "install them first, e.g. 'sudo apt-get install --no-install-recommends ${missing[*]}'" >&2
        echo "(R with the mclust package must exist before rpy2 is built; elsewhere: R from CRAN + install.packages('mclust'))" >&2
        return 1
    else
        echo "optional ${optional[*]} missing (report browser test will be skipped)"
    fi
}

python_env() {
    local stamp="$VENV/.stamp-deps" want
    want=$(hash_of pyproject.toml requirements/lock.txt)-$($PYTHON -c 'import sys; print(sys.version_info[:2])' | tr -d ' ')
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c 'import spatialdomains' 2>/dev/null; then
        echo "up to date ($VENV)"; return
    fi
    $PYTHON -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 needed"'
    [ -x "$VENV/bin/python" ] || $PYTHON -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -c requirements/lock.txt -e ".[dev]"
    "$VENV/bin/python" -c 'import rpy2.robjects as ro; ro.r("suppressMessages(library(mclust))")' 2>/dev/null \
        || { echo "rpy2 cannot load R's mclust" >&2; return 1; }
    echo "$want" > "$stamp"
    echo "installed $(  "$VENV/bin/pip" list 2>/dev/null | wc -l) packages into $VENV"
}

nfcore_tools() {
    # nf-core/tools lives in its own venv: it resolves pandas 3, which the main stack does not support.
    local venv="$ROOT/.venv-nfcore" stamp="$ROOT/.venv-nfcore/.stamp" want
    want=$(hash_of requirements/nfcore.txt)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then echo "up to date ($venv)"; return; fi
    [ -x "$venv/bin/python" ] || $PYTHON -m venv "$venv"
    "$venv/bin/pip" install -q -r requirements/nfcore.txt
    echo "$want" > "$stamp"
    echo "installed $("$venv/bin/pip" list 2>/dev/null | grep -i '^nf-core ' | tr -s ' ')"
}

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

nextflow_runtime() {
    local link="$VENV/bin/nextflow"
    # Prefer a user's own Nextflow when it is at least the pin; else assemble the pinned one.
    local sys_nf
    sys_nf=$(PATH=$(echo "$PATH" | tr ':' '\n' | grep -v "^$VENV/bin$" | paste -sd:) command -v nextflow || true)
    if [ -n "$sys_nf" ] && [ "$(readlink -f "$sys_nf")" != "$ROOT/tools/nextflow/nextflow" ]; then
        local v; v=$(NXF_OFFLINE=true "$sys_nf" -version 2>/dev/null | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -n1)
        if [ -n "$v" ] && version_ge "$v" "$NXF_PIN"; then
            ln -sfn "$sys_nf" "$link"; echo "using $sys_nf ($v >= $NXF_PIN)"; return
        fi
    fi
    local lib=tools/nextflow/lib want; want=$(hash_of tools/nextflow/pom.xml)
    if [ ! -f "$lib/.stamp" ] || [ "$(cat "$lib/.stamp")" != "$want" ]; then
        rm -rf "$lib"
        mvn -B -q -Dstyle.color=never -f tools/nextflow/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$ROOT/$lib"
        if ls "$lib" | grep -q '^groovy-all-2'; then echo "a Groovy 2 jar reached $lib" >&2; return 1; fi
        echo "$want" > "$lib/.stamp"
    fi
    ln -sfn "$ROOT/tools/nextflow/nextflow" "$link"
    echo "$("$link" -version 2>/dev/null | sed -n 's/^ *\(version .*\)/\1/p')  ($(ls "$lib" | wc -l) jars)"
}

step "system packages (R, mclust, Java)" system_packages
step "python venv" python_env
step "nextflow $NXF_PIN" nextflow_runtime
step "nf-core tools (lint)" nfcore_tools
