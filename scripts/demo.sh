#!/usr/bin/env bash
# `make demo`: run the pipeline on the bundled demo data (assets/demo/) with the test profile,
# through the offline Nextflow wrapper, then say where the outputs are.
# Extra arguments go to `nextflow run`, e.g. `bash scripts/demo.sh -resume` or `... --seeds 0,1`.
# OUTDIR sets the output folder (default results/).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
venv="${VENV:-$root/.venv}"
outdir="${OUTDIR:-results}"

nextflow="$venv/bin/nextflow"
[[ -x "$nextflow" ]] || nextflow="$root/tools/nextflow/nextflow"
if [[ ! -x "$venv/bin/spatialdomains" ]]; then
    echo "demo: $venv/bin/spatialdomains not found: run \`make setup\` first" >&2
    exit 1
fi
if [[ ! -f assets/demo/samplesheet.csv ]]; then
    echo "demo: assets/demo/samplesheet.csv is missing" >&2
    exit 1
fi

# Tasks run the CLI from the venv (no container engine in the test profile)
export PATH="$venv/bin:$PATH"
export NXF_OFFLINE=true NXF_ANSI_LOG="${NXF_ANSI_LOG:-false}"
# C1-only JIT: Nextflow starts in about half the time on a small machine
export NXF_OPTS="${NXF_OPTS:--XX:+TieredCompilation -XX:TieredStopAtLevel=1}"

start=$(date +%s)
"$nextflow" run . -profile test --outdir "$outdir" "$@"
took=$(( $(date +%s) - start ))

echo
echo "demo: finished in ${took} s. Outputs (docs/output.md describes every file):"
for group_dir in "$outdir"/*/; do
    group=$(basename "$group_dir")
    [[ "$group" == pipeline_info || "$group" == slices || "$group" == simulated_input ]] && continue
    echo "  $group_dir"
    [[ -f "$group_dir/$group.metrics.csv" ]] && echo "    metrics table:  $group_dir$group.metrics.csv"
    for run in "$group_dir"*/seed*/; do
        [[ -d "$run" ]] && echo "    domains:        $run"
    done
    [[ -f "$group_dir/report.html" ]] && echo "    report:         ${group_dir}report.html"
done
echo "  per-slice QC:     $outdir/slices/"
echo "  run information:  $outdir/pipeline_info/ (software versions, params, trace, timeline, report)"
if [[ -f "$outdir/multiqc/multiqc_report.html" ]]; then
    echo "  MultiQC report:   $outdir/multiqc/multiqc_report.html"
fi
