#!/usr/bin/env bash
# Runs one SeaweedFS S3 server in the foreground (exec: its pid is this
# script's), every port derived from BASE so that two instances can run side
# by side (start.sh's shared one, and the one a test stops and restarts):
#   tests/servers/seaweedfs.sh WEED_BINARY DIR BASE
# S3 listens on BASE+6 with the access key in DIR/s3.json; data in DIR/data.
set -euo pipefail
weed=${1:?usage: $0 WEED_BINARY DIR BASE}
dir=${2:?usage: $0 WEED_BINARY DIR BASE}
base=${3:?usage: $0 WEED_BINARY DIR BASE}
mkdir -p "$dir/data"
cat >"$dir/s3.json" <<JSON
{"identities": [{"name": "gallra-test",
  "credentials": [{"accessKey": "gallratest", "secretKey": "gallratestsecret"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
JSON
cd "$dir"
# The volume server keeps each volume's index (c0_2_0.ldb ...) in the
# system's temporary folder: one folder left in /tmp per run otherwise.
mkdir -p "$dir/tmp"
export TMPDIR="$dir/tmp"
exec "$weed" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=$((base)) -master.port.grpc=$((base + 1)) \
    -volume.port=$((base + 2)) -volume.port.grpc=$((base + 3)) \
    -filer.port=$((base + 4)) -filer.port.grpc=$((base + 5)) \
    -s3.port=$((base + 6)) -s3.port.grpc=$((base + 7)) \
    -admin.port=$((base + 8)) -admin.port.grpc=$((base + 9)) \
    -webdav.port=$((base + 10)) -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$dir/s3.json" -bucket=gallra
