#!/usr/bin/env bash
# Repository size of restic with one repository per tenant (the isolation
# gallra keeps by design) and with one repository for all tenants, on a tree
# made by gen_dataset.py. See docs/PERFORMANCE.md.
#
#   benches/restic_per_tenant.sh DATASET_DIR [WORK_DIR]
set -euo pipefail
data=${1:?usage: $0 DATASET_DIR [WORK_DIR]}
work=${2:-/tmp/gallra-restic-per-tenant}
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic; }
export RESTIC_PASSWORD=bench
rm -rf "$work" && mkdir -p "$work"
total=0
for t in "$data"/*/; do
    r=$work/$(basename "$t")
    restic -r "$r" init -q >/dev/null
    restic -r "$r" backup -q --host bench "$t" >/dev/null
    total=$((total + $(du -sb "$r" | cut -f1)))
done
echo "restic, one repository per tenant: $total bytes ($((total >> 20)) MiB)"
restic -r "$work/all" init -q >/dev/null
restic -r "$work/all" backup -q --host bench "$data"/*/ >/dev/null
one=$(du -sb "$work/all" | cut -f1)
echo "restic, one repository for all tenants: $one bytes ($((one >> 20)) MiB)"
rm -rf "$work"
