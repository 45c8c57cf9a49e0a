#!/usr/bin/env bash
# Stands in for a container engine (linked as docker, singularity...) in tests that check how Nextflow calls it:
# records each call as one shell-quoted line in calls.log beside the link (Nextflow starts Singularity with an
# emptied environment), creates the file a `pull --name FILE` would, and runs the task's command (from /bin/bash
# on) on the host instead of in the image, with the SINGULARITYENV_/APPTAINERENV_ variables set as they would be.
{ printf '%q ' "$(basename "$0")" "$@"; echo; } >> "$(dirname "$0")/calls.log"
case "${1:-}" in
    pull) while [ $# -gt 0 ] && [ "$1" != --name ]; do shift; done; touch "${2:?pull without --name}"; exit 0 ;;
    run | exec) ;;
    *) exit 0 ;;
esac
for var in ${!SINGULARITYENV_*} ${!APPTAINERENV_*}; do export "${var#*ENV_}=${!var}"; done
while [ $# -gt 0 ] && [ "$1" != /bin/bash ]; do shift; done
exec "$@"
