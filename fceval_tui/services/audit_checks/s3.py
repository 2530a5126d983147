"""The staging bucket (exists, region, write/read/delete round trip unless read-only) and the artifacts bucket."""

from __future__ import annotations

import json
import uuid

from fceval_tui.backends.aws_constants import AUDIT_PREFIX, DEFAULT_ARTIFACTS_PREFIX, S3_ROOT
from fceval_tui.services.audit_checks.aws import describe_error, is_denied, not_found
from fceval_tui.services.audit_checks.base import AuditContext, Findings


def bucket_region(location: str | None) -> str:
    # GetBucketLocation answers None for us-east-1 and "EU" for the oldest eu-west-1 buckets.
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def _grant(actions: list[str], resource: str) -> str:
    statement = {"Effect": "Allow", "Action": actions, "Resource": resource}
    return json.dumps(statement)


def _bucket(ctx: AuditContext, f: Findings, id: str, bucket: str, what: str) -> bool:
    """Existence and region findings; True when the bucket is there and readable."""
    import botocore.exceptions

    s3 = ctx.client("s3")
    region = ctx.settings.region
    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except botocore.exceptions.ClientError as exc:
        if not_found(exc):
            f.error(
                f"{id}.exists",
                f"{what} s3://{bucket} does not exist",
                describe_error(exc),
                f"create it: `aws s3 mb s3://{bucket} --region {region}`",
            )
        elif is_denied(exc):
            f.error(
                f"{id}.exists",
                f"{what} s3://{bucket} is not accessible to you",
                describe_error(exc),
                "grant s3:GetBucketLocation and s3:ListBucket on it: "
                + _grant(["s3:GetBucketLocation", "s3:ListBucket"], f"arn:aws:s3:::{bucket}"),
            )
        else:
            raise
        f.unknown(f"{id}.region", f"region of s3://{bucket} not checked", f"see {id}.exists")
        return False
    f.ok(f"{id}.exists", f"{what} s3://{bucket} exists")
    actual = bucket_region(location)
    if actual != region:
        f.warning(
            f"{id}.region",
            f"s3://{bucket} is in {actual}, jobs run in {region}",
            "it works, but every transfer crosses regions (slower, and billed per GB)",
            f"use a bucket in {region}, or set AWS_REGION={actual}",
        )
    else:
        f.ok(f"{id}.region", f"s3://{bucket} is in {region}, like the jobs")
    return True


def check_staging_bucket(ctx: AuditContext, f: Findings) -> None:
    import botocore.exceptions

    bucket = ctx.settings.staging_bucket
    if not bucket:
        f.error(
            "s3.staging.exists",
            "no staging bucket configured (FC_EVAL_S3_BUCKET is empty)",
            f"the {ctx.backend} backend stages the pipeline script and command output in S3",
            "create one and set it: `aws s3 mb s3://my-fceval-staging`, "
            "then FC_EVAL_S3_BUCKET=my-fceval-staging in .env",
        )
        f.unknown("s3.staging.region", "no staging bucket to check", "see s3.staging.exists")
        f.unknown("s3.staging.roundtrip", "no staging bucket to check", "see s3.staging.exists")
        return
    if not _bucket(ctx, f, "s3.staging", bucket, "staging bucket"):
        f.unknown("s3.staging.roundtrip", f"write/read/delete on s3://{bucket} not tried", "see s3.staging.exists")
        return
    if ctx.read_only:
        f.unknown(
            "s3.staging.roundtrip",
            f"write probes skipped: the console is read-only, so no object was written to s3://{bucket}",
            "whether jobs can write, read back and delete staging objects was not tested",
            "run `fceval-tui audit` (or the console without --readonly) to test them",
        )
        return
    s3 = ctx.client("s3")
    key = f"{AUDIT_PREFIX}{uuid.uuid4().hex}"
    body = f"fceval-tui preflight probe {key}".encode()
    objects = f"arn:aws:s3:::{bucket}/{S3_ROOT}*"
    fix = "grant read/write on the console's prefix: " + _grant(
        ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], objects
    )
    step = "write"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        step = "read back"
        read = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        step = "delete"
        s3.delete_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        left = (
            f"; s3://{bucket}/{key} is left behind (`fceval-tui teardown --orphans` removes it)"
            if step != "write"
            else ""
        )
        said = describe_error(exc)
        if "kms:" in said:
            # S3 asked KMS for the bucket's key on the caller's behalf (services/bucket_keys.py).
            fix = (
                "allow the bucket's SSE-KMS key through S3: see iam.caller.kms "
                "(`fceval-tui audit --print-policy caller`)"
            )
        f.error("s3.staging.roundtrip", f"cannot {step} s3://{bucket}/{key}", said + left, fix)
        return
    if read != body:
        f.error(
            "s3.staging.roundtrip",
            f"s3://{bucket}/{key} read back different bytes",
            "something rewrites objects in this bucket (a proxy, or an object lambda)",
            "use a plain bucket for staging",
        )
        return
    f.ok("s3.staging.roundtrip", f"wrote, read back and deleted s3://{bucket}/{key}")


def check_results_bucket(ctx: AuditContext, f: Findings) -> None:
    artifacts = ctx.settings.artifacts or ""
    if artifacts and not artifacts.startswith("s3://"):
        f.error(
            "s3.results.exists",
            f"FCEVAL_ARTIFACTS={artifacts} is a local directory",
            f"{ctx.backend} compute uploads artifacts itself and cannot write to this machine",
            "set FCEVAL_ARTIFACTS=s3://bucket/prefix (or leave it empty to use S3_BUCKET_NAME or the staging bucket)",
        )
        return
    if artifacts:
        bucket, source = artifacts[5:].split("/", 1)[0], "FCEVAL_ARTIFACTS"
    elif ctx.settings.results_bucket:
        bucket, source = ctx.settings.results_bucket, "S3_BUCKET_NAME"
    else:
        f.info(
            "s3.results.exists",
            "no results bucket: artifacts go to the staging bucket",
            f"under s3://{ctx.settings.staging_bucket or 'FC_EVAL_S3_BUCKET'}/{DEFAULT_ARTIFACTS_PREFIX}",
            "set S3_BUCKET_NAME or FCEVAL_ARTIFACTS=s3://bucket/prefix to keep results elsewhere",
        )
        return
    if bucket == ctx.settings.staging_bucket:
        f.info(
            "s3.results.exists",
            f"artifacts go to the staging bucket s3://{bucket} ({source})",
            "see the s3.staging findings",
        )
        return
    _bucket(ctx, f, "s3.results", bucket, f"results bucket ({source})")
