#!/usr/bin/env bash
# Measures FastCDC bounds on the generated hosting tree: backup time, peak
# RSS, repository size, and what the day-1 change costs (new bytes after
# dedup, stored bytes), for several min/avg/max settings.
#
#   benches/chunk_params.sh [--size 2G] [--work /tmp/gallra-chunks]
#
# The figures behind the default bounds are in docs/DESIGN.md.
set -euo pipefail
size=2G
work=/tmp/gallra-chunks
while [ $# -gt 0 ]; do
    case $1 in
        --size) size=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        *) echo "usage: $0 [--size 2G] [--work DIR]" >&2; exit 2 ;;
    esac
done
top=$(git rev-parse --show-toplevel)
gen=$top/../shared/bench/gen_dataset.py
gallra=${BENCH_GALLRA:-$top/target/release/gallra}
[ -n "${BENCH_GALLRA:-}" ] || (cd "$top" && cargo build --release --quiet)
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }

mkdir -p "$work"
if [ ! -d "$work/day0" ]; then
    python3 "$gen" "$work/day0" --size "$size" --tenants 8 --seed 1
    cp -a "$work/day0" "$work/day1"
    python3 "$gen" "$work/day1" --changed --seed 1 --day 1
fi
[ -f "$work/key" ] || "$gallra" key generate "$work/key" >/dev/null

summary() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["bytes_added"], d["bytes_stored"])'; }

printf '| min / avg / max | first backup s | peak RSS MiB | repo after day 0 MiB | day 1: new MiB | day 1: stored MiB |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
for bounds in "64KiB 256KiB 1MiB" "128KiB 512KiB 2MiB" "256KiB 1MiB 4MiB" "512KiB 1MiB 8MiB" "512KiB 2MiB 8MiB"; do
    read -r min avg max <<<"$bounds"
    rm -rf "$work/repo" "$work/state"
    for day in day0 day1; do
        cat > "$work/$day.toml" <<TOML
[agent]
host = "bench"
state_dir = "$work/state"
[key]
file = "$work/key"
[repository]
chunk_min = "$min"
chunk_avg = "$avg"
chunk_max = "$max"
[[target]]
name = "local"
url = "file://$work/repo"
[[source]]
name = "www"
category = "site"
paths = ["$work/$day/{tenant}"]
TOML
    done
    "$gallra" --config "$work/day0.toml" init >/dev/null
    sync
    /usr/bin/time -f '%e %M' -o "$work/time" "$gallra" --config "$work/day0.toml" backup --json >/dev/null
    read -r secs rss <"$work/time"
    repo0=$(du -sb "$work/repo" | cut -f1)
    read -r added stored < <("$gallra" --config "$work/day1.toml" backup --json | summary)
    awk -v b="$bounds" -v s="$secs" -v r="$rss" -v r0="$repo0" -v a="$added" -v st="$stored" \
        'BEGIN { printf "| %s | %.2f | %.0f | %.1f | %.1f | %.1f |\n", b, s, r/1024, r0/1048576, a/1048576, st/1048576 }'
done
