# Shared by benches/ship.sh and benches/drill.sh: source it after setting
# `data` (the dataset folder). Sets `root`, `gallra` (BENCH_GALLRA or the
# release build) and `work` (a temporary folder removed on exit).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gallra=${BENCH_GALLRA:-$root/target/release/gallra}
work=$(mktemp -d /tmp/gallra-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

# timed TOOL STEP CMD... : prints "tool step seconds peak-RSS" for CMD,
# after a sync so the previous step's writes are not billed to it.
timed() {
    local tool=$1 step=$2; shift 2
    sync
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    read -r secs kb <"$work/time"
    printf '%-7s %-28s %8.2f s %8.1f MiB\n' "$tool" "$step" "$secs" "$(echo "$kb / 1024" | bc -l)"
}

# Warms the page cache with the dataset, so the first step does not pay for
# the disk; makes a key and $work/agent.toml with a primary file:// target
# `local`, a `{tenant}` source over the dataset, and the [[target]] tables
# given as $1.
gallra_setup() {
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
${1:-}
[[source]]
name = "www"
category = "site"
paths = ["$data/{tenant}"]
TOML
    "$gallra" --config "$work/agent.toml" init >/dev/null
}
