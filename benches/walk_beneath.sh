#!/usr/bin/env bash
# benches/walk_beneath.sh BIN DATA: one gallra binary on a tree of many
# small files (DATA/<tenant>/...): a first backup, then three unchanged
# backups, each timed with its peak RSS. Run it for two builds (before and
# after a change to the walk) on the same DATA to compare them;
# docs/PERFORMANCE.md has the figures and how the tree was made.
set -euo pipefail
BENCH_GALLRA=$(realpath "${1:?usage: $0 BIN DATA}")
data=$(realpath "${2:?usage: $0 BIN DATA}")
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
gallra_setup
backup=("$gallra" --config "$work/agent.toml" backup --no-ship --json)
timed gallra "first backup" "${backup[@]}"
for _ in 1 2 3; do timed gallra "unchanged backup" "${backup[@]}"; done
