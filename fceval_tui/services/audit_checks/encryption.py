"""The staging and results buckets' default encryption, and their SSE-KMS keys resolved to key ARNs.

GetBucketEncryption answers ServerSideEncryptionConfigurationNotFoundError for a bucket without a
default encryption configuration. An `aws:kms` / `aws:kms:dsse` rule names its key by key id, key
ARN or alias ARN, or by nothing (then S3 uses the AWS managed key `aws/s3`); kms:DescribeKey gives
the key ARN that IAM policies name (an alias cannot stand for its key in a policy's Resource).
What each key means for the policies is in services/bucket_keys.py; the role and caller checks
(iam.py) check those permissions.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from fceval_tui.domain.artifacts import split_s3
from fceval_tui.services.audit_checks.aws import describe_error, error_code, is_denied
from fceval_tui.services.audit_checks.base import AuditContext, Findings
from fceval_tui.services.bucket_keys import KMS_ALGORITHMS, MANAGED_ALIAS, BucketKey, managed_note

NO_CONFIGURATION = "ServerSideEncryptionConfigurationNotFoundError"


@dataclass(frozen=True)
class BucketEncryption:
    bucket: str
    role: str  # "staging" or "results": the finding id is s3.{role}.encryption
    algorithm: str = ""  # "" (none), "AES256", "aws:kms" or "aws:kms:dsse"
    configured_key: str = ""  # as the rule names it ("" for aws/s3)
    key: BucketKey | None = None
    key_state: str = ""
    problem: str = ""  # why the encryption or the key could not be read
    fix: str = ""

    @property
    def kms(self) -> bool:
        return self.algorithm in KMS_ALGORITHMS


def buckets(settings) -> list[tuple[str, str]]:
    """(bucket, role) for the staging bucket and, when it is another S3 bucket, the results bucket."""
    from fceval_tui.backends.cloud import cloud_artifact_prefix

    found = [(settings.staging_bucket, "staging")] if settings.staging_bucket else []
    url = cloud_artifact_prefix(settings)
    results = split_s3(url)[0] if url else None
    if results and results != settings.staging_bucket:
        found.append((results, "results"))
    return found


def read_encryption(s3, kms, bucket: str, role: str) -> BucketEncryption:
    """The bucket's default encryption and key; AWS errors become `problem`, never an exception."""
    import botocore.exceptions

    failures = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except failures as exc:
        if error_code(exc) == NO_CONFIGURATION:
            return BucketEncryption(bucket, role)
        fix = "allow s3:GetEncryptionConfiguration on it (`fceval-tui audit --print-policy caller`)"
        return BucketEncryption(bucket, role, problem=describe_error(exc), fix=fix if is_denied(exc) else "")
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    algorithm = default.get("SSEAlgorithm", "")
    configured = default.get("KMSMasterKeyID", "")
    if algorithm not in KMS_ALGORITHMS:
        return BucketEncryption(bucket, role, algorithm)
    try:
        meta = kms.describe_key(KeyId=configured or MANAGED_ALIAS)["KeyMetadata"]
    except failures as exc:
        if configured.startswith("arn:") and ":key/" in configured:
            # The rule names the key by ARN: that is what the policies need, described or not.
            return BucketEncryption(bucket, role, algorithm, configured, BucketKey(bucket, configured))
        return BucketEncryption(
            bucket,
            role,
            algorithm,
            configured,
            problem=f"cannot resolve its key {configured or MANAGED_ALIAS}: {describe_error(exc)}",
            fix=(
                "allow kms:DescribeKey on the key, or name the key by its key ARN in the bucket's default "
                "encryption; keys are looked up in AWS_REGION, the bucket's key must be in the bucket's region"
            ),
        )
    managed = meta.get("KeyManager") == "AWS" or configured.endswith(MANAGED_ALIAS) or not configured
    key = BucketKey(bucket, meta["Arn"], managed)
    return BucketEncryption(bucket, role, algorithm, configured, key, meta.get("KeyState", ""))


def read_all(ctx: AuditContext) -> list[BucketEncryption]:
    """Every bucket's encryption, read once per audit (the IAM checks need the keys too)."""
    return ctx.once(
        "bucket-encryption",
        lambda: [read_encryption(ctx.client("s3"), ctx.client("kms"), b, role) for b, role in buckets(ctx.settings)],
    )


def bucket_keys(ctx: AuditContext) -> tuple[BucketKey, ...]:
    return tuple(e.key for e in read_all(ctx) if e.key is not None)


_STATE_FIX = {
    "Disabled": "aws kms enable-key --key-id {key}",
    "PendingDeletion": "aws kms cancel-key-deletion --key-id {key} && aws kms enable-key --key-id {key}",
}


def check_bucket_encryption(ctx: AuditContext, f: Findings) -> None:
    for found in read_all(ctx):
        id, where = f"s3.{found.role}.encryption", f"s3://{found.bucket}"
        if found.problem:
            f.unknown(id, f"encryption of {where} not known", found.problem, found.fix or f"see s3.{found.role}.exists")
        elif not found.algorithm:
            f.ok(id, f"{where} has no default encryption: no KMS permissions needed")
        elif not found.kms:
            f.ok(id, f"{where} is encrypted with {found.algorithm} (SSE-S3): no KMS permissions needed")
        elif found.key is None:
            f.unknown(id, f"{where} uses {found.algorithm}, with a key not resolved")
        elif found.key_state and found.key_state != "Enabled":
            fix = _STATE_FIX.get(found.key_state, "use an enabled key: aws s3api put-bucket-encryption ...")
            f.error(
                id,
                f"{where} is encrypted with key {found.key.arn}, which is {found.key_state}",
                "S3 cannot encrypt or decrypt with it: every upload and download fails",
                fix.format(key=shlex.quote(found.key.arn)),
            )
        elif found.key.aws_managed:
            f.info(id, f"{where} uses {found.algorithm} with the AWS managed key aws/s3", managed_note(found.key))
        else:
            f.ok(
                id,
                f"{where} uses {found.algorithm} with key {found.key.arn}",
                "the policies grant kms:GenerateDataKey and kms:Decrypt on it through S3 "
                "(checked in iam.caller.kms and the compute role's kms finding)",
            )
