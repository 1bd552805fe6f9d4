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
root=$(cd "$(dirname "$0")/.." && pwd)
gallra=${BENCH_GALLRA:-$root/target/release/gallra}
work=$(mktemp -d /tmp/gallra-drill-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
timed() { # timed TOOL STEP CMD...
    local tool=$1 step=$2; shift 2
    sync
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    read -r secs kb <"$work/time"
    printf '%-7s %-28s %8.2f s %8.1f MiB\n' "$tool" "$step" "$secs" "$(echo "$kb / 1024" | bc -l)"
}

find "$data" -type f -print0 | xargs -0 cat >/dev/null
"$gallra" key generate "$work/key" >/dev/null
cat >"$work/agent.toml" <<TOML
[agent]
host = "bench"
state_dir = "$work/state"
[key]
file = "$work/key"
[[target]]
name = "local"
url = "file://$work/g-local"
primary = true
[[source]]
name = "www"
category = "site"
paths = ["$data/{tenant}"]
TOML
g() { "$gallra" --config "$work/agent.toml" "$@"; }
g init >/dev/null
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
