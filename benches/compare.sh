#!/usr/bin/env bash
# benches/compare.sh - time gallra against restic on the shared synthetic
# hosting dataset (../shared/bench/gen_dataset.py) and check the speed, memory
# and size goals.
#
# Usage (from the repo root):
#   benches/compare.sh [--size 2G] [--runs 3] [--work DIR] [--keep]
#
# Every flag has an environment equivalent; a flag wins over the environment:
#   BENCH_SIZE=2G              dataset size (binary units, as gen_dataset.py takes)
#   BENCH_RUNS=3               number of back-to-back runs; the table shows medians
#   BENCH_WORK=/tmp/gallra-bench  scratch folder (dataset, repositories, logs, results)
#   BENCH_KEEP=1               keep repositories and dataset (see "--keep" below)
#   BENCH_ONLY=restic|gallra   time only one tool (ratios and goals then show n/a);
#                              BENCH_ONLY=restic is how this script is tested while
#                              gallra is not able to back up yet.
#   BENCH_GALLRA=PATH          use this gallra binary instead of building one with
#                              `cargo build --release` (e.g. a build of another commit)
#
# One run = for each tool, on a fresh repository:
#   first     backup of day 0 (the tree as generated)
#   unchanged backup of the same tree again
#   changed   backup after gen_dataset.py --changed --day 1 (applied once per run,
#             after both tools' unchanged backups, so both see the same day-1 tree)
#   restore   of the latest backup into an empty folder (checked, then dropped)
#   check     check --read-data
# Each step runs under GNU time (-f '%e %M': wall seconds, peak RSS in KiB) after
# a `sync`. The page cache cannot be dropped reliably (no root in CI, VMs), so
# every step runs warm; the tree is small next to RAM, so both tools read it
# from cache alike. The tool that goes first alternates between runs so neither
# one systematically gets the warmer or the colder cache.
#
# --keep: the repositories of every run but the last are moved to
# $WORK/kept/runN/ (each run still starts on fresh repositories), the last run's
# stay in place so `gallra --config $WORK/gallra/agent.toml ...` and
# `restic -r $WORK/restic-repo ...` (password "bench") work on them; the dataset
# is kept too and reused by the next invocation with the same size (which
# replaces $WORK/kept). A failed invocation leaves everything in place as well.
# Without --keep only the results, timings and logs stay in $WORK.
#
# Output: a table on stdout and the same in Markdown in $WORK/results.md, the raw
# numbers in $WORK/timings.tsv and $WORK/sizes.tsv, one log per step in $WORK/logs/.

set -Eeuo pipefail

PROG=benches/compare.sh
TENANTS=8          # gen_dataset.py --tenants; gallra writes one snapshot per tenant
SEED=1

# ---------------------------------------------------------------- messages ---

info() { printf '%s: %s\n' "$PROG" "$*" >&2; }
# die inside $(...) exits the subshell with 86, which tells the ERR trap of the
# shell around it that the message is already out.
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    if ((BASH_SUBSHELL > 0)); then exit 86; fi
    exit 1
}
# Anything that fails without its own message still says where it failed.
# shellcheck disable=SC2154 # _rc is set inside the trap itself
trap '_rc=$?; if ((_rc == 86)); then exit 1; fi; die "unexpected failure (exit $_rc) at line $LINENO: $BASH_COMMAND"' ERR

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
}

# ----------------------------------------------------------------- options ---

# The exact command line, environment included, for the results header.
CMDLINE=""
for v in BENCH_SIZE BENCH_RUNS BENCH_WORK BENCH_KEEP BENCH_ONLY BENCH_GALLRA; do
    if [[ -n "${!v:-}" ]]; then CMDLINE+="$v=$(printf '%q' "${!v}") "; fi
done
CMDLINE+="$(printf '%q' "$0")"
if (($#)); then CMDLINE+=" $(printf '%q ' "$@")"; CMDLINE=${CMDLINE% }; fi

SIZE=${BENCH_SIZE:-2G}
RUNS=${BENCH_RUNS:-3}
WORK=${BENCH_WORK:-/tmp/gallra-bench}
KEEP=${BENCH_KEEP:-0}
ONLY=${BENCH_ONLY:-}

while (($#)); do
    case $1 in
        --size) (($# >= 2)) || die "--size needs a value"; SIZE=$2; shift 2 ;;
        --size=*) SIZE=${1#*=}; shift ;;
        --runs) (($# >= 2)) || die "--runs needs a value"; RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --work) (($# >= 2)) || die "--work needs a value"; WORK=$2; shift 2 ;;
        --work=*) WORK=${1#*=}; shift ;;
        --keep) KEEP=1; shift ;;
        -h | --help) usage ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
done

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, got '$RUNS'"
[[ $KEEP == 0 || $KEEP == 1 ]] || die "BENCH_KEEP must be 0 or 1, got '$KEEP'"
case $ONLY in
    "") TOOLS=(gallra restic) ;;
    gallra | restic) TOOLS=("$ONLY") ;;
    *) die "BENCH_ONLY must be 'gallra' or 'restic', got '$ONLY'" ;;
esac
uses() { [[ " ${TOOLS[*]} " == *" $1 "* ]]; }

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null) ||
    die "$0 is not inside a git work tree (run it from the gallra repo)"
GEN="$ROOT/../shared/bench/gen_dataset.py"
[[ -f $GEN ]] || die "dataset generator not found at $GEN (shared/ must sit beside the repo)"

# Absolute, symlink-free: gallra and restic store full source paths, and the
# restore check looks for the tree at DIR/<that path>.
WORK=$(realpath -m -- "$WORK")
[[ $WORK != / && $WORK != "$ROOT" && $WORK != "$ROOT"/* ]] ||
    die "--work $WORK: refusing to use / or a folder inside the repo"
# The path is written into TOML strings; keep it plain rather than escape it.
[[ $WORK != *[\"\\[:cntrl:]]* ]] || die "--work $WORK: quotes, backslashes and control characters are not supported"

# --------------------------------------------------------------- the tools ---

ensure_tools() {
    command -v python3 >/dev/null || die "python3 is required (for gen_dataset.py and the summary)"
    local missing=()
    [[ -x /usr/bin/time ]] || missing+=(time)
    if uses restic && ! command -v restic >/dev/null; then missing+=(restic); fi
    if ((${#missing[@]})); then
        info "installing missing Debian packages: ${missing[*]}"
        command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
        local sudo=()
        if ((EUID != 0)); then
            command -v sudo >/dev/null || die "missing ${missing[*]}: install them as root (apt-get install ${missing[*]})"
            sudo=(sudo)
        fi
        local log="$WORK/logs/apt-get.log"
        "${sudo[@]}" apt-get update >"$log" 2>&1 || die "apt-get update failed; see $log"
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >>"$log" 2>&1 ||
            die "apt-get install -y ${missing[*]} failed; see $log"
    fi
    [[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) still missing after install"
    /usr/bin/time -f '%e %M' true 2>/dev/null || die "/usr/bin/time is not GNU time (it must take -f '%e %M')"
    if uses restic; then
        command -v restic >/dev/null || die "restic still missing after install"
    fi
    if uses gallra && [[ -n ${BENCH_GALLRA:-} ]]; then
        GALLRA=$(realpath -- "$BENCH_GALLRA") || die "BENCH_GALLRA=$BENCH_GALLRA does not exist"
        [[ -x $GALLRA ]] || die "BENCH_GALLRA=$BENCH_GALLRA is not executable"
        info "using $GALLRA (BENCH_GALLRA, not built)"
    elif uses gallra; then
        command -v cargo >/dev/null || die "cargo is required to build gallra"
        info "building gallra (cargo build --release)"
        (cd "$ROOT" && cargo build --release) >"$WORK/logs/cargo-build.log" 2>&1 ||
            die "cargo build --release failed; see $WORK/logs/cargo-build.log:"$'\n'"$(tail -n 20 "$WORK/logs/cargo-build.log")"
        GALLRA="${CARGO_TARGET_DIR:-$ROOT/target}/release/gallra"
        [[ -x $GALLRA ]] || die "cargo build succeeded but $GALLRA is missing"
    fi
}

# -------------------------------------------------------------- work space ---

# $WORK is rm -rf'ed piecemeal: only ever in a folder this script created.
prepare_work() {
    if [[ -e $WORK && ! -e $WORK/.gallra-bench ]]; then
        [[ -d $WORK ]] || die "--work $WORK exists and is not a folder"
        [[ -z $(ls -A "$WORK") ]] ||
            die "--work $WORK exists, is not empty and was not made by this script (no .gallra-bench marker); pick another folder"
    fi
    mkdir -p "$WORK" || die "cannot create $WORK"
    touch "$WORK/.gallra-bench"
    rm -rf "$WORK/logs" "$WORK/kept" "$WORK/restore" "$WORK/results.md"
    mkdir -p "$WORK/logs"
    printf 'run\ttool\tstep\twall_s\tmaxrss_kib\n' >"$WORK/timings.tsv"
    printf 'run\ttool\trepo_bytes\n' >"$WORK/sizes.tsv"
}

size_bytes() { # the generator's own parser, so "2G" means the same to both
    PYTHONDONTWRITEBYTECODE=1 python3 - "$GEN" "$1" <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("gen_dataset", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
n = mod.parse_size(sys.argv[2])
if n <= 0:
    raise SystemExit("size must be positive")
print(n)
EOF
}

check_space() {
    local need avail
    # pristine + working copy + one restore + two repositories (at most the
    # tree each) ... plus every kept run's repositories.
    need=$((SIZE_BYTES * 5))
    if ((KEEP)); then need=$((need + SIZE_BYTES * 2 * (RUNS - 1))); fi
    if [[ -f $WORK/pristine.params ]]; then need=$((need - SIZE_BYTES)); fi
    avail=$(df --output=avail -B1 "$WORK" | tail -n 1 | tr -d ' ')
    ((avail >= need)) || die "$WORK has $((avail >> 20)) MiB free, the benchmark needs about $((need >> 20)) MiB"
}

# Generate day 0 once; $WORK/pristine is the reference each run resets to.
# A dataset left by --keep is reused when it was made with the same parameters.
prepare_dataset() {
    local params
    params="size=$SIZE_BYTES tenants=$TENANTS seed=$SEED gen=$(sha256sum <"$GEN" | cut -c1-16)"
    if [[ -d $WORK/pristine && -f $WORK/pristine.params && $(<"$WORK/pristine.params") == "$params" ]]; then
        info "reusing the day-0 dataset in $WORK/pristine ($params)"
        return
    fi
    rm -rf "$WORK/pristine" "$WORK/pristine.params" "$WORK/data"
    info "generating the dataset: $SIZE, $TENANTS tenants, seed $SEED"
    python3 "$GEN" "$WORK/data" --size "$SIZE" --tenants "$TENANTS" --seed "$SEED" \
        >"$WORK/logs/gen-day0.log" 2>&1 || die "gen_dataset.py failed; see $WORK/logs/gen-day0.log"
    info "$(tail -n 1 "$WORK/logs/gen-day0.log")"
    cp -a "$WORK/data" "$WORK/pristine" || die "cannot copy the dataset to $WORK/pristine"
    printf '%s\n' "$params" >"$WORK/pristine.params"
}

reset_tree() { # back to day 0; cp -a keeps the mtimes the generator set
    rm -rf "$WORK/data"
    cp -a "$WORK/pristine" "$WORK/data" || die "cannot reset $WORK/data from $WORK/pristine"
}

apply_changed() {
    local run=$1 log="$WORK/logs/run$1-gen-day1.log"
    python3 "$GEN" "$WORK/data" --changed --seed "$SEED" --day 1 >"$log" 2>&1 ||
        die "run $run: gen_dataset.py --changed failed; see $log"
    info "run $run: day 1: $(tail -n 1 "$log")"
}

# ----------------------------------------------------------------- timing ---

# timed RUN TOOL STEP CMD... : sync, run CMD under GNU time with its output in a
# log, append "run tool step wall rss" to timings.tsv, abort on failure.
timed() {
    local run=$1 tool=$2 step=$3
    shift 3
    local log="$WORK/logs/run$run-$tool-$step.log" tf="$WORK/logs/run$run-$tool-$step.time"
    sync # flush the previous step's writes so they are not billed to this one
    info "run $run/$RUNS: $tool $step"
    if ! /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$log" 2>&1; then
        printf '%s\n' "--- last lines of $log:" >&2
        tail -n 20 "$log" >&2
        die "run $run: $tool $step failed ($(head -n 1 "$tf" 2>/dev/null)); command: $*"
    fi
    local wall rss
    read -r wall rss < <(tail -n 1 "$tf")
    [[ $wall =~ ^[0-9.]+$ && $rss =~ ^[0-9]+$ ]] || die "cannot parse GNU time output in $tf"
    printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$tool" "$step" "$wall" "$rss" >>"$WORK/timings.tsv"
    info "    ${wall} s, $((rss / 1024)) MiB peak RSS"
}

# A digest of the names and sizes of the regular files under a folder: catches
# a restore that is missing files, has wrong names or wrong sizes (contents are
# the tools' own business: check --read-data).
tree_manifest() {
    (cd "$1" && find . -type f -printf '%p %s\n' | LC_ALL=C sort | md5sum | cut -d' ' -f1)
}

verify_restore() { # verify_restore RUN TOOL RESTORE_DIR
    local got="$3$WORK/data" want_sum got_sum
    [[ -d $got ]] || die "run $1: $2 restore did not create $got"
    want_sum=$(tree_manifest "$WORK/data")
    got_sum=$(tree_manifest "$got")
    [[ $want_sum == "$got_sum" ]] ||
        die "run $1: $2 restore differs from $WORK/data in file names or sizes (compare: diff -r $WORK/data $got; kept)"
}

# Restores go to a fresh ext4 file system on a loop device when we can make
# one (root, losetup): after 64,000 files are deleted, ext4 skips their
# inodes for hours when allocating new ones ("recently deleted"), and the next
# restore on that file system spends most of its time in the kernel: restores
# of the same repository took 12 s on a fresh file system and 34 s in a folder
# where the previous restore had been deleted, for either tool. A fresh file
# system per restore is what a rebuilt server restores onto.
# BENCH_RESTORE_FS=plain restores into a plain folder instead.
RESTORE_ON_LOOP=0
if [[ ${BENCH_RESTORE_FS:-loop} != plain ]] && ((EUID == 0)) &&
    command -v losetup >/dev/null && command -v mkfs.ext4 >/dev/null && losetup -f >/dev/null 2>&1; then
    RESTORE_ON_LOOP=1
fi

restore_target_make() { # restore_target_make DIR
    rm -rf "$1" && mkdir -p "$1"
    ((RESTORE_ON_LOOP)) || return 0
    local img="$1.img"
    rm -f "$img"
    truncate -s $((SIZE_BYTES * 2 + (1 << 30))) "$img"
    mkfs.ext4 -q -F "$img" || die "mkfs.ext4 $img failed (BENCH_RESTORE_FS=plain avoids it)"
    mount -o loop "$img" "$1" || die "mounting $img failed (BENCH_RESTORE_FS=plain avoids it)"
}

restore_target_drop() { # restore_target_drop DIR
    if ((RESTORE_ON_LOOP)); then
        umount "$1" && rm -f "$1.img"
    fi
    rm -rf "$1"
}

record_size() { # record_size RUN TOOL REPO_DIR
    local bytes
    bytes=$(du -sb "$3" | cut -f1)
    printf '%s\t%s\t%s\n' "$1" "$2" "$bytes" >>"$WORK/sizes.tsv"
    info "run $1: $2 repository: $((bytes >> 20)) MiB"
}

# Length of the JSON array on stdin; a short message instead of a traceback.
json_len() {
    python3 -c '
import json, sys
try:
    doc = json.load(sys.stdin)
except ValueError as e:
    sys.exit(f"not JSON: {e}")
if not isinstance(doc, list):
    sys.exit("not a JSON array")
print(len(doc))'
}

# ----------------------------------------------------------------- restic ---

export RESTIC_PASSWORD=bench
# A cache per run, in WORK, so a run never profits from the previous one's.
export RESTIC_CACHE_DIR="$WORK/restic-cache"
RREPO="$WORK/restic-repo"

restic_count() {
    restic -r "$RREPO" snapshots --json --host bench 2>>"$WORK/logs/restic-snapshots.log" |
        json_len ||
        die "restic snapshots --json failed; see $WORK/logs/restic-snapshots.log"
}

restic_init() {
    rm -rf "$RREPO" "$RESTIC_CACHE_DIR"
    restic -r "$RREPO" init >"$WORK/logs/run$1-restic-init.log" 2>&1 ||
        die "run $1: restic init failed; see $WORK/logs/run$1-restic-init.log"
}

restic_backup() { # restic_backup RUN STEP
    local before after
    before=$(restic_count)
    # Same command each time: restic picks the parent (same host and paths) itself.
    timed "$1" restic "$2" restic -r "$RREPO" backup --host bench "$WORK/data"
    after=$(restic_count)
    ((after == before + 1)) || die "run $1: restic $2 backup left $after snapshots, expected $((before + 1))"
}

restic_restore() {
    local dir="$WORK/restore/restic"
    restore_target_make "$dir"
    timed "$1" restic restore restic -r "$RREPO" restore latest --host bench --target "$dir"
    verify_restore "$1" restic "$dir"
    restore_target_drop "$dir"
}

restic_check() { timed "$1" restic check restic -r "$RREPO" check --read-data; }

# ----------------------------------------------------------------- gallra ---

GDIR="$WORK/gallra"
GREPO="$WORK/gallra-repo"
GCONF="$GDIR/agent.toml"

gallra_count() {
    "$GALLRA" --config "$GCONF" snapshots --json 2>>"$WORK/logs/gallra-snapshots.log" |
        json_len ||
        die "gallra snapshots --json failed or printed no JSON array; see $WORK/logs/gallra-snapshots.log"
}

# Fresh key, state and repository every run: the state folder holds gallra's
# change-detection cache, which must not carry over to a fresh repository.
gallra_init() {
    rm -rf "$GDIR" "$GREPO"
    mkdir -p "$GDIR/state"
    "$GALLRA" key generate "$GDIR/key" >"$WORK/logs/run$1-gallra-keygen.log" 2>&1 ||
        die "run $1: gallra key generate failed; see $WORK/logs/run$1-gallra-keygen.log"
    [[ -s $GDIR/key ]] || die "run $1: gallra key generate exited 0 but wrote no $GDIR/key"
    cat >"$GCONF" <<EOF
# written by $PROG
[agent]
host = "bench"
state_dir = "$GDIR/state"

[key]
file = "$GDIR/key"

[repository]
compression = 3

[[target]]
name = "local"
url = "file://$GREPO"
primary = true

[[source]]
name = "www"
category = "site"
paths = ["$WORK/data/{tenant}"]
EOF
    "$GALLRA" --config "$GCONF" init >"$WORK/logs/run$1-gallra-init.log" 2>&1 ||
        die "run $1: gallra init failed; see $WORK/logs/run$1-gallra-init.log"
    [[ -d $GREPO && -n $(ls -A "$GREPO") ]] || die "run $1: gallra init exited 0 but $GREPO is empty"
}

gallra_backup() { # gallra_backup RUN STEP
    local before after
    before=$(gallra_count)
    timed "$1" gallra "$2" "$GALLRA" --config "$GCONF" backup
    after=$(gallra_count)
    ((after == before + TENANTS)) ||
        die "run $1: gallra $2 backup left $after snapshots, expected $((before + TENANTS)) (one per tenant)"
}

# The newest snapshot of each tenant, i.e. the latest backup run's snapshots.
gallra_latest_ids() {
    "$GALLRA" --config "$GCONF" snapshots --json 2>>"$WORK/logs/gallra-snapshots.log" | python3 -c '
import json, re, sys
from datetime import datetime

def when(s):  # RFC 3339; datetime takes at most microseconds and no "Z" before 3.11
    s = re.sub(r"(\.\d{6})\d+", r"\1", s.replace("Z", "+00:00"))
    return datetime.fromisoformat(s)

newest = {}
for snap in json.load(sys.stdin):
    t = snap["tenant"]
    if t not in newest or when(snap["time"]) > when(newest[t]["time"]):
        newest[t] = snap
for t in sorted(newest):
    print(newest[t]["id"])
'
}

gallra_restore() {
    local dir="$WORK/restore/gallra" ids
    mapfile -t ids < <(gallra_latest_ids) || true
    ((${#ids[@]} == TENANTS)) ||
        die "run $1: found ${#ids[@]} tenants in gallra snapshots --json, expected $TENANTS; see $WORK/logs/gallra-snapshots.log"
    restore_target_make "$dir"
    # All tenants in one timed process: GNU time's %M is then the largest RSS of
    # any of the restores (the children), and %e the total.
    # shellcheck disable=SC2016 # expanded by the inner bash, not here
    timed "$1" gallra restore bash -c 'bin=$1 conf=$2 dir=$3; shift 3
        for id; do "$bin" --config "$conf" restore "$id" --to "$dir" || exit; done' \
        restore-all "$GALLRA" "$GCONF" "$dir" "${ids[@]}"
    verify_restore "$1" gallra "$dir"
    restore_target_drop "$dir"
}

gallra_check() { timed "$1" gallra check "$GALLRA" --config "$GCONF" check --read-data; }

# ---------------------------------------------------------------- one run ---

# keep_or_drop RUN: --keep moves this run's repositories aside (the last run's
# stay in place); otherwise they go.
keep_or_drop() {
    local run=$1
    if ((KEEP)); then
        if ((run == RUNS)); then return 0; fi
        mkdir -p "$WORK/kept/run$run"
        if uses gallra; then mv "$GREPO" "$GDIR" "$WORK/kept/run$run/"; fi
        if uses restic; then mv "$RREPO" "$WORK/kept/run$run/"; fi
    else
        rm -rf "$GREPO" "$GDIR" "$RREPO" "$RESTIC_CACHE_DIR"
    fi
}

one_run() {
    local run=$1 order=("${TOOLS[@]}") t
    # Alternate which tool goes first (run 1: gallra, run 2: restic, ...).
    if ((run % 2 == 0 && ${#TOOLS[@]} == 2)); then order=("${TOOLS[1]}" "${TOOLS[0]}"); fi
    info "=== run $run/$RUNS (order: ${order[*]}) ==="
    reset_tree
    for t in "${order[@]}"; do "${t}_init" "$run"; done
    for t in "${order[@]}"; do
        "${t}_backup" "$run" first
        "${t}_backup" "$run" unchanged
    done
    apply_changed "$run" # once, so both tools back up the same day-1 tree
    for t in "${order[@]}"; do "${t}_backup" "$run" changed; done
    for t in "${order[@]}"; do "${t}_restore" "$run"; done
    for t in "${order[@]}"; do "${t}_check" "$run"; done
    if uses gallra; then record_size "$run" gallra "$GREPO"; fi
    if uses restic; then record_size "$run" restic "$RREPO"; fi
    keep_or_drop "$run"
}

# ---------------------------------------------------------------- summary ---

summarize() {
    local rev cpu
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || rev="(no commit yet)"
    # Tracked files only: untracked ones (this script before it is committed,
    # build output) do not change what is measured.
    if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
        rev+=" (uncommitted changes)"
    fi
    cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') || cpu=unknown
    BENCH_REV=$rev BENCH_NPROC=$(nproc) BENCH_CPU=$cpu BENCH_CMDLINE=$CMDLINE \
        BENCH_RESTORE_TARGET=$( ((RESTORE_ON_LOOP)) && echo "a fresh ext4 file system (loop device) per restore" || echo "a plain folder") \
        BENCH_SIZE_ARG=$SIZE BENCH_RUNS_N=$RUNS BENCH_TOOLS="${TOOLS[*]}" \
        BENCH_RESTIC_VERSION="$(if uses restic; then restic version; else echo -; fi)" \
        BENCH_GALLRA_VERSION="$(if uses gallra; then "$GALLRA" --version 2>/dev/null || echo "(no --version)"; else echo -; fi)" \
        python3 - "$WORK/timings.tsv" "$WORK/sizes.tsv" "$WORK/results.md" <<'EOF'
import csv, os, sys
from statistics import median

timings_path, sizes_path, md_path = sys.argv[1:4]
env = os.environ
tools = env["BENCH_TOOLS"].split()

def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))

wall, rss, size = {}, {}, {}
for r in read(timings_path):
    wall.setdefault((r["tool"], r["step"]), []).append(float(r["wall_s"]))
    rss.setdefault((r["tool"], r["step"]), []).append(int(r["maxrss_kib"]))
for r in read(sizes_path):
    size.setdefault(r["tool"], []).append(int(r["repo_bytes"]))

steps = [("first", "first backup", 0.67), ("unchanged", "unchanged backup", 0.5),
         ("changed", "changed backup (day 1)", None), ("restore", "restore latest", 0.67),
         ("check", "check --read-data", 0.67)]

def med(d, key):
    v = d.get(key)
    return median(v) if v else None

def ratio(g, r):
    return g / r if g is not None and r else None

def verdict(x, goal):
    if goal is None:
        return "report only"
    if x is None:
        return "n/a"
    return "PASS" if x <= goal else "MISS"

f2 = lambda x: "n/a" if x is None else f"{x:.2f}"
mib = lambda k: "n/a" if k is None else f"{k / 1024:.1f}"
byt = lambda b: "n/a" if b is None else f"{b / 2**20:.1f} MiB"
goal_s = lambda g: "-" if g is None else f"<= {g:.2f}"

# Tables as header + rows of cells; printed as text and as Markdown.
speed = [["step", "gallra s", "restic s", "gallra/restic", "goal", "result"]]
for key, name, goal in steps:
    g, r = med(wall, ("gallra", key)), med(wall, ("restic", key))
    x = ratio(g, r)
    speed.append([name, f2(g), f2(r), f2(x), goal_s(goal), verdict(x, goal)])

memory = [["step", "gallra MiB", "restic MiB", "gallra/restic", "goal", "result"]]
gmax = rmax = None
for key, name, _ in steps:
    g, r = med(rss, ("gallra", key)), med(rss, ("restic", key))
    if g is not None: gmax = max(gmax or 0, g)
    if r is not None: rmax = max(rmax or 0, r)
    memory.append([name, mib(g), mib(r), f2(ratio(g, r)), "", ""])
x = ratio(gmax, rmax)
memory.append(["max over steps", mib(gmax), mib(rmax), f2(x), goal_s(1.0), verdict(x, 1.0)])

g, r = (median(size[t]) if size.get(t) else None for t in ("gallra", "restic"))
x = ratio(g, r)
repo = [["repository after 3 backups", "gallra", "restic", "gallra/restic", "goal", "result"],
        ["size (du -sb)", byt(g), byt(r), f"{x:.3f}" if x is not None else "n/a", goal_s(1.05), verdict(x, 1.05)]]

header = [("commit", env["BENCH_REV"]), ("command", env["BENCH_CMDLINE"]),
          ("nproc", env["BENCH_NPROC"]), ("cpu", env["BENCH_CPU"]),
          ("dataset", f"gen_dataset.py --size {env['BENCH_SIZE_ARG']} --tenants 8 --seed 1, day 0 then --changed --day 1"),
          ("runs", f"{env['BENCH_RUNS_N']} (medians shown); tools timed: {' '.join(tools)}"),
          ("restore target", env["BENCH_RESTORE_TARGET"]),
          ("gallra", env["BENCH_GALLRA_VERSION"]), ("restic", env["BENCH_RESTIC_VERSION"])]
note = ("Wall seconds and peak RSS from GNU time, medians over runs, warm page cache. "
        "The memory goal compares the largest per-step median of each tool.")

def text_table(rows):
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "  ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)).rstrip()
    return "\n".join([line(rows[0]), line(["-" * n for n in w])] + [line(r) for r in rows[1:]])

def md_table(rows):
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
    return "\n".join(out)

out = ["gallra vs restic"] + [f"  {k:8} {v}" for k, v in header]
for title, t in (("Wall time", speed), ("Peak RSS", memory), ("Repository size", repo)):
    out += ["", title, text_table(t)]
out += ["", note]
print("\n".join(out))

md = ["# gallra vs restic", ""] + [f"- **{k}**: `{v}`" for k, v in header]
for title, t in (("Wall time", speed), ("Peak RSS", memory), ("Repository size", repo)):
    md += ["", f"## {title}", "", md_table(t)]
md += ["", note, ""]
with open(md_path, "w") as f:
    f.write("\n".join(md))
EOF
}

# ------------------------------------------------------------------- main ---

main() {
    SIZE_BYTES=$(size_bytes "$SIZE" 2>/dev/null) || die "--size '$SIZE' is not a size gen_dataset.py understands (e.g. 2G, 200M)"
    prepare_work
    check_space
    ensure_tools
    prepare_dataset
    local run
    for ((run = 1; run <= RUNS; run++)); do one_run "$run"; done
    if ((!KEEP)); then rm -rf "$WORK/data" "$WORK/pristine" "$WORK/pristine.params" "$WORK/restore"; fi
    echo
    summarize
    info "results: $WORK/results.md (raw: $WORK/timings.tsv, $WORK/sizes.tsv; logs: $WORK/logs/)"
}

main
