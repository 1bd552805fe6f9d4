#!/usr/bin/env bash
# A restore drill measured beside restic: DATASET backed up by both tools
# to a local folder, then every tenant restored and verified from there.
# gallra: `gallra drill --tenant ...` (restore into scratch, SHA-256 of
# every file as written and read back from disk, metadata compared, scratch
# removed, audit records written). restic: `restic restore latest
# --verify` (restore, then read every file back and compare its content),
# followed by removing the restored tree, as a drill must.
#   benches/drill.sh DATASET          (needs restic)
# Prints one line per step: tool, step, seconds, peak RSS.
set -euo pipefail
data=${1:?usage: $0 DATASET}
. "$(dirname "$0")/lib.sh"
gallra_setup
g() { "$gallra" --config "$work/agent.toml" "$@"; }
g backup >/dev/null
tenants=()
for t in "$data"/*/; do tenants+=(--tenant "$(basename "$t")"); done
timed gallra "drill every tenant" "$gallra" --config "$work/agent.toml" drill "${tenants[@]}" --scratch "$work/g-scratch" --max-age "1 day"

export RESTIC_PASSWORD=bench
restic -q -r "$work/r-local" init >/dev/null
restic -q -r "$work/r-local" backup --host bench "$data" >/dev/null
restic_drill() {
    restic -r "$work/r-local" restore latest --verify --target "$work/r-scratch" && rm -rf "$work/r-scratch"
}
export -f restic_drill
export work
timed restic "restore --verify, remove" bash -c restic_drill
