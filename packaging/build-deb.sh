#!/usr/bin/env bash
# Builds the Debian package of gallra with cargo-deb:
#   packaging/build-deb.sh [cargo-deb options...]     e.g. --deb-revision 2
# 1. cargo build --release --locked
# 2. generates into target/assets/ what the package ships besides the binary:
#    shell completions (bash, zsh, fish) and the man page, from the binary
#    just built (`gallra completions SHELL`, `gallra man`)
# 3. cargo deb --no-build: the package as [package.metadata.deb] in
#    Cargo.toml describes it, written to target/debian/gallra_<version>_<arch>.deb;
#    debug symbols go to a separate gallra-dbgsym_*.ddeb (the release profile
#    keeps line tables for backtraces; the .deb's binary is stripped).
# cargo-deb is not needed by CI. When it is missing, it is installed from
# crates.io with `cargo install cargo-deb --locked` (a few minutes), into
# $CARGO_DEB_ROOT if set (then used from $CARGO_DEB_ROOT/bin), else cargo's
# default root (~/.cargo/bin).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "build-deb: $*" >&2; exit 1; }

if [[ -n ${CARGO_DEB_ROOT:-} ]]; then
    export PATH="$CARGO_DEB_ROOT/bin:$PATH"
fi
if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: cargo-deb is missing; installing it from crates.io (cargo install cargo-deb --locked${CARGO_DEB_ROOT:+ --root $CARGO_DEB_ROOT})" >&2
    cargo install cargo-deb --locked ${CARGO_DEB_ROOT:+--root "$CARGO_DEB_ROOT"}
    cargo deb --version >/dev/null 2>&1 || die "cargo deb still not found after installing it (is its bin folder on PATH?)"
fi
command -v dpkg-deb >/dev/null 2>&1 || echo "build-deb: note: dpkg-deb is missing; cargo-deb builds the package without it, but you cannot inspect it here" >&2

echo "== cargo build --release --locked"
cargo build --release --locked --bin gallra
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target_dir/release/gallra
[[ -x $bin ]] || die "$bin was not built"

# Always ./target/assets (the crate's folder, whatever CARGO_TARGET_DIR
# says): Cargo.toml's assets name these paths relative to the crate.
echo "== completions and man page -> target/assets/"
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets"
"$bin" completions bash >"$assets/gallra.bash"
"$bin" completions zsh >"$assets/_gallra"
"$bin" completions fish >"$assets/gallra.fish"
"$bin" man >"$assets/gallra.1"
# Debian policy: man pages compressed with gzip -9n (no name or time stamp).
gzip -9n -c "$assets/gallra.1" >"$assets/gallra.1.gz"
for f in gallra.bash _gallra gallra.fish gallra.1; do
    [[ -s $assets/$f ]] || die "$assets/$f is empty"
done

echo "== cargo deb --no-build"
cargo deb --no-build --locked --dbgsym "$@"
echo "build-deb: done; inspect with: dpkg-deb -I target/debian/gallra_*.deb; dpkg-deb -c target/debian/gallra_*.deb"
