#!/usr/bin/env bash
# Checks the unit files in systemd/ with `systemd-analyze verify`, without
# installing anything of gallra on this machine:
#   packaging/verify-units.sh [GALLRA_BINARY]     (default: target/debug/gallra,
#                                                  built if missing)
# verify insists that every Exec*= binary exists, so the units are copied to
# a temporary folder with /usr/bin/gallra replaced by GALLRA_BINARY (the
# absolute path of a freshly built binary) and verified there. It does not
# need the gallra user: verify loads the units in a test-mode manager and
# creates no user, folder or credential (StateDirectory=, LoadCredential=
# and User= are resolved only when a unit starts).
#
# It fails when verify exits nonzero (a fatal error: missing or relative
# binary, no ExecStart, ...) AND when verify prints anything about our units:
# an unknown key, an unparsable value or an unknown section is only a
# warning to verify ("..., ignoring", exit 0), but it silently drops a
# setting, often a hardening one. Clean units print nothing. Lines about
# other units on this machine (pulled in as dependencies, such as
# network-online.target) are shown but do not fail it.
#
# systemd-analyze comes with Debian's `systemd` package; it is installed
# (apt-get, with sudo unless root) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "verify-units: $*" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify-units: systemd-analyze is missing; installing Debian's systemd package" >&2
    command -v apt-get >/dev/null 2>&1 || die "systemd-analyze missing and no apt-get to install it"
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "systemd-analyze missing: install it as root (apt-get install systemd)"
        sudo=(sudo)
    fi
    log=$(mktemp)
    "${sudo[@]}" apt-get update >"$log" 2>&1 || { cat "$log" >&2; die "apt-get update failed"; }
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd >>"$log" 2>&1 ||
        { cat "$log" >&2; die "apt-get install systemd failed"; }
    rm -f "$log"
    command -v systemd-analyze >/dev/null 2>&1 || die "systemd-analyze still missing after installing systemd"
fi

bin=${1:-target/debug/gallra}
if [[ ! -x $bin ]]; then
    [[ $# -eq 0 ]] || die "$bin is not an executable file"
    echo "verify-units: $bin missing; cargo build --locked --bin gallra" >&2
    cargo build --locked --bin gallra
fi
bin=$(realpath -- "$bin")

units=()
for f in systemd/*.service systemd/*.timer systemd/*.path systemd/*.socket; do
    [[ -e $f ]] && units+=("$f")
done
((${#units[@]})) || die "no unit files in systemd/"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
copies=()
for f in "${units[@]}"; do
    name=$(basename "$f")
    # `|` as the sed delimiter: neither path contains one.
    sed "s|/usr/bin/gallra|$bin|g" "$f" >"$tmp/$name"
    copies+=("$tmp/$name")
done

echo "systemd-analyze $(systemd-analyze --version | head -n 1 | awk '{print $2}'): verify ${units[*]}"
set +e
out=$(systemd-analyze verify --man=no "${copies[@]}" 2>&1)
rc=$?
set -e

ours=() others=()
if [[ -n $out ]]; then
    while IFS= read -r line; do
        matched=0
        for c in "${copies[@]}"; do
            name=$(basename "$c")
            if [[ $line == *"$tmp"* || $line == *"$name"* ]]; then matched=1; break; fi
        done
        if ((matched)); then ours+=("${line//$tmp\//systemd/}"); else others+=("$line"); fi
    done <<<"$out"
fi

for line in "${others[@]}"; do echo "  (another unit on this machine, not ours) $line"; done
for line in "${ours[@]}"; do echo "  $line"; done
if ((rc != 0)); then
    die "systemd-analyze verify failed (exit $rc)"
fi
if ((${#ours[@]})); then
    die "systemd-analyze verify reported ${#ours[@]} problem(s) in our units (each line above drops or breaks a setting)"
fi
echo "verify-units: ${#units[@]} unit file(s) clean"
