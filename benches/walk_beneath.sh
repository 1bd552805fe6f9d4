#!/usr/bin/env bash
# benches/walk_beneath.sh BIN NAME SRC: one gallra binary on a tree of small
# files SRC: init, a first backup, three unchanged backups; prints the
# seconds of each. Run it for two builds (before and after a change to the
# walk) on the same SRC to compare them; docs/PERFORMANCE.md has the figures
# and how the tree was made. Leaves its repository in
# ${TMPDIR:-/tmp}/walk-bench-NAME.
set -euo pipefail
bin=$1 name=$2 src=$3
dir=${TMPDIR:-/tmp}/walk-bench-$name
rm -rf "$dir"
mkdir -p "$dir"
"$bin" key generate "$dir/key" >/dev/null
cat >"$dir/agent.toml" <<TOML
[agent]
host = "bench"
state_dir = "$dir/state"
[key]
file = "$dir/key"
[[target]]
name = "local"
url = "file://$dir/repo"
primary = true
[[source]]
name = "www"
category = "site"
tenant = "acme"
paths = ["$src"]
TOML
"$bin" --config "$dir/agent.toml" init >/dev/null
timed() { # timed LABEL: one backup, its wall seconds
    local start end
    start=$(date +%s.%N)
    "$bin" --config "$dir/agent.toml" backup --no-ship --json >/dev/null
    end=$(date +%s.%N)
    python3 -c "import sys; print(sys.argv[1], sys.argv[2], round(float(sys.argv[4]) - float(sys.argv[3]), 3))" "$name" "$1" "$start" "$end"
}
timed first
for _ in 1 2 3; do timed unchanged; done
