"""Sets up the IAM-enforcing moto server for the integration tests.

    moto_iam_setup.py --count
        prints how many requests the setup makes: start the server with
        INITIAL_NO_AUTH_ACTION_COUNT set to that, so that exactly the setup
        runs unchecked and every later request is checked against IAM.
    moto_iam_setup.py ENDPOINT POLICIES_DIR KEYS_FILE
        runs the setup against ENDPOINT, writes the users' access keys to
        KEYS_FILE (mode 0600, shell `NAME='value'` lines, never printed),
        then checks with those keys that the shipped policies in
        POLICIES_DIR are really enforced.

Run with the moto venv's python (boto3 comes with moto[server]).
"""

import datetime
import os
import shlex
import sys

import boto3
import botocore.config
from botocore.exceptions import ClientError

REGION = "us-east-1"
BUCKET = "gallra-fleet"
DEFAULT_LOCK_BUCKET = "gallra-fleet-default-lock"
BUCKETS = (BUCKET, DEFAULT_LOCK_BUCKET)
MAX_LOCK_DAYS = "400"
# user -> (policy file, PREFIX, name of its keys in KEYS_FILE)
USERS = {
    # A wildcard for PREFIX: each test makes its repository in a folder of
    # its own under web01/ (web01/<test>/...), as a developer's servers
    # outlive a run, and the shipped policy then holds for every such folder.
    "fleet-web01": ("s3-fleet.json", "web01/*", "FLEET1"),
    "fleet-web02": ("s3-fleet.json", "web02/*", "FLEET2"),
    "deletion": ("s3-deletion.json", None, "DELETION"),
}
PLACEHOLDERS = ("BUCKET", "PREFIX", "MAX_LOCK_DAYS")

# A retry would spend one of the unchecked requests and leave a later setup
# request to be refused, so every request is made exactly once.
NO_RETRY = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})


def plan(policies_dir):
    """Every setup request, in order, as (service, operation, arguments).

    The --count mode and the real run both take their number from here, so
    they cannot disagree. Policy documents are only read when policies_dir
    is given (--count needs no files).
    """
    steps = []
    for bucket in BUCKETS:
        # Object Lock turns versioning on, as the fleet's buckets have it.
        steps.append(("s3", "create_bucket",
                      {"Bucket": bucket, "ObjectLockEnabledForBucket": True}))
    steps.append(("s3", "put_object_lock_configuration", {
        "Bucket": DEFAULT_LOCK_BUCKET,
        "ObjectLockConfiguration": {
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    }))
    for user, (policy_file, prefix, _) in USERS.items():
        steps.append(("iam", "create_user", {"UserName": user}))
        for bucket in BUCKETS:
            document = None
            if policies_dir is not None:
                document = policy(policies_dir, policy_file, bucket, prefix)
            steps.append(("iam", "put_user_policy", {
                "UserName": user, "PolicyName": bucket, "PolicyDocument": document}))
        steps.append(("iam", "create_access_key", {"UserName": user}))
    return steps


def policy(policies_dir, policy_file, bucket, prefix):
    with open(os.path.join(policies_dir, policy_file)) as f:
        text = f.read()
    text = text.replace("MAX_LOCK_DAYS", MAX_LOCK_DAYS).replace("BUCKET", bucket)
    if prefix is not None:
        text = text.replace("PREFIX", prefix)
    left = [p for p in PLACEHOLDERS if p in text]
    if left:
        sys.exit(f"{policy_file}: placeholder(s) {left} left after substitution")
    return text


def client(service, endpoint, key="setup", secret="setupsecret"):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=NO_RETRY)


def setup(endpoint, policies_dir):
    steps = plan(policies_dir)
    sent = 0

    def count(**_):
        nonlocal sent
        sent += 1

    clients = {name: client(name, endpoint) for name in ("s3", "iam")}
    for c in clients.values():
        # Counts what goes on the wire, retries included, not what we meant.
        c.meta.events.register("before-send", count)
    keys = {}
    for service, operation, args in steps:
        try:
            result = getattr(clients[service], operation)(**args)
        except ClientError as e:
            sys.exit(f"setup: {service} {operation} {args.get('Bucket') or args.get('UserName')}"
                     f" failed: {e} (if refused: was the server started with"
                     f" INITIAL_NO_AUTH_ACTION_COUNT={len(steps)}, and nothing else sent to it?)")
        if operation == "create_access_key":
            key = result["AccessKey"]
            keys[key["UserName"]] = (key["AccessKeyId"], key["SecretAccessKey"])
    if sent != len(steps):
        sys.exit(f"setup: sent {sent} requests, but the server lets exactly {len(steps)} through"
                 " unchecked (INITIAL_NO_AUTH_ACTION_COUNT): fix plan()")
    return keys


def write_keys(path, keys):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
    with os.fdopen(fd, "w") as f:
        for user, (_, _, name) in USERS.items():
            key, secret = keys[user]
            f.write(f"{name}_KEY={shlex.quote(key)}\n{name}_SECRET={shlex.quote(secret)}\n")


def refused(e):
    return (e.response.get("Error", {}).get("Code") in ("AccessDenied", "InvalidAccessKeyId")
            or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403)


class Checks:
    def __init__(self):
        self.passed = []
        self.failed = []
        self.notes = []

    def allowed(self, what, call):
        try:
            result = call()
        except ClientError as e:
            self.failed.append(f"{what}: expected allowed, got {e}")
            return None
        self.passed.append(what)
        return result

    def denied(self, what, call):
        try:
            call()
        except ClientError as e:
            if refused(e):
                self.passed.append(what)
            else:
                self.failed.append(f"{what}: expected AccessDenied, got {e}")
            return
        self.failed.append(f"{what}: expected AccessDenied, was allowed")

    def aws_denies(self, what, call):
        """Refused on AWS by a policy condition that moto may not evaluate:
        a note either way, so the tests know what they cannot rely on."""
        try:
            call()
        except ClientError as e:
            self.notes.append(f"enforced like AWS: {what} refused"
                              f" ({e.response['Error'].get('Code')})")
            return
        self.notes.append(f"moto ignores the condition: {what} allowed (AWS refuses it)")


def verify(endpoint, keys):
    # Before anything else: if the count was off, enforcement is not on yet
    # and every later check would be meaningless.
    try:
        client("s3", endpoint, "AKIAMADEUP", "madeupsecret").list_objects_v2(Bucket=BUCKET)
    except ClientError as e:
        if not refused(e):
            sys.exit(f"verify: made-up keys got {e}, not a refusal")
    else:
        sys.exit("verify: moto served a request signed with made-up keys: IAM enforcement is"
                 " off (is INITIAL_NO_AUTH_ACTION_COUNT what `moto_iam_setup.py --count` prints?)")

    web01 = client("s3", endpoint, *keys["fleet-web01"])
    web02 = client("s3", endpoint, *keys["fleet-web02"])
    deletion = client("s3", endpoint, *keys["deletion"])
    c = Checks()
    pack = "web01/setup/tenants/acme/packs/ab/x"
    other = "web02/setup/tenants/acme/packs/ab/y"

    c.allowed("web01 put own pack", lambda: web01.put_object(Bucket=BUCKET, Key=pack, Body=b"pack"))
    got = c.allowed("web01 get own pack", lambda: web01.get_object(Bucket=BUCKET, Key=pack))
    if got is not None and got["Body"].read() != b"pack":
        c.failed.append("web01 get own pack: wrong content")
    listed = c.allowed("web01 list prefix web01/",
                       lambda: web01.list_objects_v2(Bucket=BUCKET, Prefix="web01/"))
    if listed is not None and pack not in [o["Key"] for o in listed.get("Contents", [])]:
        c.failed.append("web01 list prefix web01/: own pack missing")
    c.allowed("web01 get bucket versioning", lambda: web01.get_bucket_versioning(Bucket=BUCKET))
    c.allowed("web01 get object lock configuration",
              lambda: web01.get_object_lock_configuration(Bucket=BUCKET))
    for lock in ("web01/setup/tenants/acme/locks/exclusive", "web01/setup/locks-selftest/abc"):
        c.allowed(f"web01 put {lock}", lambda: web01.put_object(Bucket=BUCKET, Key=lock, Body=b"l"))
        c.allowed(f"web01 delete {lock}", lambda: web01.delete_object(Bucket=BUCKET, Key=lock))
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    c.allowed("web01 lock own pack 30 days", lambda: web01.put_object_retention(
        Bucket=BUCKET, Key=pack, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": soon}))

    c.allowed("web02 put own pack", lambda: web02.put_object(Bucket=BUCKET, Key=other, Body=b"2"))
    c.denied("web01 get web02's pack", lambda: web01.get_object(Bucket=BUCKET, Key=other))
    c.denied("web01 put under web02/", lambda: web01.put_object(
        Bucket=BUCKET, Key="web02/setup/tenants/acme/packs/ab/z", Body=b"z"))
    c.denied("web01 delete own pack", lambda: web01.delete_object(Bucket=BUCKET, Key=pack))
    c.denied("web01 delete web02's pack", lambda: web01.delete_object(Bucket=BUCKET, Key=other))

    c.aws_denies("web01 list prefix web02/ (s3:prefix StringLike)",
                 lambda: web01.list_objects_v2(Bucket=BUCKET, Prefix="web02/"))
    c.aws_denies("web01 list whole bucket (s3:prefix StringLike)",
                 lambda: web01.list_objects_v2(Bucket=BUCKET))
    late = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1000)
    c.aws_denies("web01 lock own pack 1000 days (NumericLessThanEquals"
                 " s3:object-lock-remaining-retention-days)",
                 lambda: web01.put_object_retention(
                     Bucket=BUCKET, Key=pack,
                     Retention={"Mode": "GOVERNANCE", "RetainUntilDate": late}))

    locked = "web01/setup/tenants/acme/packs/cd/default"
    c.allowed("web01 put pack in default-lock bucket", lambda: web01.put_object(
        Bucket=DEFAULT_LOCK_BUCKET, Key=locked, Body=b"d"))
    head = c.allowed("web01 head pack in default-lock bucket",
                     lambda: web01.head_object(Bucket=DEFAULT_LOCK_BUCKET, Key=locked))
    if head is not None and head.get("ObjectLockMode") != "COMPLIANCE":
        c.failed.append("default-lock bucket: new object has no COMPLIANCE retention"
                        f" (ObjectLockMode={head.get('ObjectLockMode')})")
    c.denied("web01 delete pack in default-lock bucket",
             lambda: web01.delete_object(Bucket=DEFAULT_LOCK_BUCKET, Key=locked))

    # Deletes without a version id only add delete markers: the versions stay,
    # which is all the policies let anyone do to locked objects anyway.
    c.allowed("deletion delete web01's pack", lambda: deletion.delete_object(Bucket=BUCKET, Key=pack))
    c.allowed("deletion delete web02's pack", lambda: deletion.delete_object(Bucket=BUCKET, Key=other))
    c.allowed("deletion delete pack in default-lock bucket",
              lambda: deletion.delete_object(Bucket=DEFAULT_LOCK_BUCKET, Key=locked))
    c.allowed("deletion list whole bucket", lambda: deletion.list_objects_v2(Bucket=BUCKET))
    return c


def main(argv):
    if argv == ["--count"]:
        print(len(plan(None)))
        return
    if len(argv) != 3:
        sys.exit(__doc__)
    endpoint, policies_dir, keys_file = argv
    keys = setup(endpoint, policies_dir)
    write_keys(keys_file, keys)
    c = verify(endpoint, keys)
    for note in c.notes:
        print(f"moto-iam: {note}", file=sys.stderr)
    if c.failed:
        for failure in c.failed:
            print(f"moto-iam: FAILED {failure}", file=sys.stderr)
        sys.exit(f"moto-iam: {len(c.failed)} of {len(c.passed) + len(c.failed)} policy checks failed")
    print(f"moto-iam: {len(plan(None))} setup requests, made-up keys refused,"
          f" {len(c.passed)} policy checks passed, {len(c.notes)} condition notes")


if __name__ == "__main__":
    main(sys.argv[1:])
