#!/usr/bin/env bash
# Shipping measured beside restic: a first backup of DATASET to a local
# target, then the time to copy that repository to a second target, for
# gallra (`gallra ship`) and restic (`restic copy`, which decrypts and
# re-encrypts), to a local folder and to the S3 server of
# tests/servers/start.sh (SeaweedFS on loopback), and a restore from S3.
#   benches/ship.sh DATASET          (needs: . ENV_FILE from start.sh; restic)
# Prints one line per step: tool, step, seconds, peak RSS.
set -euo pipefail
data=${1:?usage: $0 DATASET}
: "${GALLRA_TEST_S3_ENDPOINT:?source the env file tests/servers/start.sh wrote}"
. "$(dirname "$0")/lib.sh"
run=$$
export AWS_ACCESS_KEY_ID=$GALLRA_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$GALLRA_TEST_S3_SECRET_KEY
gallra_setup "[[target]]
name = \"copy\"
url = \"file://$work/g-copy\"
[[target]]
name = \"s3\"
url = \"s3://$GALLRA_TEST_S3_BUCKET/bench-$run/gallra\"
options = { endpoint = \"$GALLRA_TEST_S3_ENDPOINT\", region = \"us-east-1\", allow_http = \"true\" }"
g() { "$gallra" --config "$work/agent.toml" "$@"; }
timed gallra "backup (local, no ship)" "$gallra" --config "$work/agent.toml" backup --no-ship
timed gallra "ship to local folder" "$gallra" --config "$work/agent.toml" ship --target copy
timed gallra "ship to S3" "$gallra" --config "$work/agent.toml" ship --target s3
timed gallra "ship again (nothing new)" "$gallra" --config "$work/agent.toml" ship
# One tenant restored from S3 (the largest), by both tools.
read -r id tenant_path < <(g snapshots --json --target s3 | python3 -c 'import json,sys; s = max(json.load(sys.stdin), key=lambda s: s["bytes"]); print(s["id"], s["paths"][0])')
timed gallra "restore a tenant from S3" "$gallra" --config "$work/agent.toml" restore "$id" --target s3 --to "$work/g-restore"
rm -rf "$work/g-restore"

export RESTIC_PASSWORD=bench RESTIC_FROM_PASSWORD=bench
restic -q -r "$work/r-local" init >/dev/null
timed restic "backup (local)" restic -r "$work/r-local" backup --host bench "$data"
restic -q -r "$work/r-copy" init --copy-chunker-params --from-repo "$work/r-local" >/dev/null
timed restic "copy to local folder" restic -r "$work/r-copy" copy --from-repo "$work/r-local"
r3="s3:$GALLRA_TEST_S3_ENDPOINT/$GALLRA_TEST_S3_BUCKET/bench-$run/restic"
restic -q -r "$r3" init --copy-chunker-params --from-repo "$work/r-local" >/dev/null
timed restic "copy to S3" restic -r "$r3" copy --from-repo "$work/r-local"
timed restic "copy again (nothing new)" restic -r "$r3" copy --from-repo "$work/r-local"
timed restic "restore a tenant from S3" restic -r "$r3" restore latest --include "$tenant_path" --target "$work/r-restore"
