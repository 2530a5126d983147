"""SSE-KMS buckets (moto's KMS and put_bucket_encryption): the audit reads the staging and results
buckets' default encryption, resolves the key ARN, and the printed policies and the permission
checks include kms:GenerateDataKey and kms:Decrypt on that key through S3; SSE-S3 changes nothing;
the AWS managed key aws/s3 needs no statement, and the audit says why."""

from __future__ import annotations

import json

import pytest

from fceval_tui.services import audit
from fceval_tui.services.audit_checks import Severity
from fceval_tui.services.bucket_keys import BucketKey
from tests.helpers.audit import denied_simulator, errors, only_error, run, user_with_policy
from tests.helpers.aws import REGION


def _encrypt(audit_world, bucket: str, algorithm: str, key: str = "") -> None:
    rule: dict = {"SSEAlgorithm": algorithm}
    if key:
        rule["KMSMasterKeyID"] = key
    audit_world.client("s3").put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
    )


def _customer_key(audit_world) -> tuple[str, str]:
    """A customer managed key and an alias ARN naming it (what a bucket's rule may hold)."""
    kms = audit_world.client("kms")
    key = kms.create_key(Description="fceval staging")["KeyMetadata"]
    alias = f"alias/fceval-{audit_world.bucket}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return key["Arn"], f"arn:aws:kms:{REGION}:{key['Arn'].split(':')[4]}:{alias}"


def _findings(report) -> dict:
    return {f.id: f for f in report.findings}


def _statements(text: str, action: str) -> list[dict]:
    listed = lambda v: [v] if isinstance(v, str) else v  # noqa: E731
    return [s for s in json.loads(text)["Statement"] if action in listed(s["Action"])]


def test_sse_s3_changes_nothing(audit_world):
    _encrypt(audit_world, audit_world.bucket, "AES256")
    settings = audit_world.settings()
    keys, notes = audit.read_bucket_keys(settings, "ec2")
    assert keys == () and notes == []
    for which in ("caller", "instance"):
        assert audit.print_policy(settings, "ec2", which, keys) == audit.print_policy(settings, "ec2", which)
        assert "kms:GenerateDataKey" not in audit.print_policy(settings, "ec2", which, keys)[0]
    report = run(settings)
    assert errors(report) == {}
    found = _findings(report)
    assert found["s3.staging.encryption"].severity is Severity.OK
    assert "SSE-S3" in found["s3.staging.encryption"].summary
    assert not {"iam.caller.kms", "iam.role.kms"} & set(found)


def test_kms_bucket_needs_the_key_for_the_role_and_the_caller(audit_world, monkeypatch):
    key_arn, alias_arn = _customer_key(audit_world)
    _encrypt(audit_world, audit_world.bucket, "aws:kms", alias_arn)  # named by alias: resolved to the key
    settings = audit_world.settings()
    keys, notes = audit.read_bucket_keys(settings, "ec2")
    assert keys == (BucketKey(audit_world.bucket, key_arn),)
    assert any(key_arn in note for note in notes)

    # The printed policies grant the key through S3 only; the caller also may describe it (the audit does).
    via = {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}
    caller_text = audit.print_policy(settings, "ec2", "caller", keys)[0]
    instance_text = audit.print_policy(settings, "ec2", "instance", keys)[0]
    for text, sid in ((caller_text, "FcevalTuiEc2BucketKeys"), (instance_text, "FcevalTuiEc2ComputeInboxKey")):
        [statement] = _statements(text, "kms:GenerateDataKey")
        assert statement == {
            "Sid": sid,
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": key_arn,
            "Condition": via,
        }
    [describe] = _statements(caller_text, "kms:DescribeKey")
    assert describe["Resource"] == key_arn and describe["Sid"].startswith("FcevalTuiPreflightAudit")

    # The role has S3 but no KMS: a failing finding naming what is missing, with the fix.
    report = run(settings)
    finding = only_error(report, "iam.role.kms")
    assert f"kms:GenerateDataKey on {key_arn}" in finding.detail and f"kms:Decrypt on {key_arn}" in finding.detail
    assert "AccessDenied" in finding.detail
    fix_start = f"aws iam put-role-policy --role-name {audit_world.role} --policy-name fceval-tui-kms"
    assert finding.fix.startswith(fix_start)
    assert key_arn in finding.fix and "kms:ViaService" in finding.fix
    found = _findings(report)
    assert found["s3.staging.encryption"].severity is Severity.OK and key_arn in found["s3.staging.encryption"].summary
    assert found["iam.caller.kms"].severity is Severity.OK  # AllowAll simulates the caller

    # Applying the printed fix clears it.
    fix_document = json.loads(finding.fix.split("--policy-document ", 1)[1].strip("'"))
    audit_world.client("iam").put_role_policy(
        RoleName=audit_world.role, PolicyName="fceval-tui-kms", PolicyDocument=json.dumps(fix_document)
    )
    report = run(settings)
    assert errors(report) == {} and _findings(report)["iam.role.kms"].severity is Severity.OK

    # The caller: its printed policy is enough; without the KMS statement, a failing finding.
    printed = json.loads(caller_text)
    printed["Statement"] = [s for s in printed["Statement"] if s["Sid"] != "FcevalTuiEc2BucketKeys"]
    user_with_policy(audit_world, monkeypatch, printed)
    report = run(settings, simulator=denied_simulator())
    # S3 refuses the write probe too, as it does for a caller that may not use the bucket's key (kms_double).
    assert set(errors(report)) == {"iam.caller.kms", "s3.staging.roundtrip"}
    probe = _findings(report)["s3.staging.roundtrip"]
    assert "kms:GenerateDataKey" in probe.detail and "iam.caller.kms" in probe.fix
    finding = _findings(report)["iam.caller.kms"]
    assert finding.severity is Severity.ERROR and finding.fix
    assert f"kms:GenerateDataKey on {key_arn}: not allowed" in finding.detail
    assert "FcevalTuiEc2BucketKeys" in finding.fix and "--print-policy caller" in finding.fix


def test_the_printed_caller_policy_covers_an_encrypted_results_bucket(audit_world, monkeypatch):
    key_arn, _alias = _customer_key(audit_world)
    results = f"{audit_world.bucket}-results"
    audit_world.client("s3").create_bucket(Bucket=results)
    _encrypt(audit_world, results, "aws:kms:dsse", key_arn)
    settings = audit_world.settings(FCEVAL_ARTIFACTS=f"s3://{results}/evals")
    keys, _notes = audit.read_bucket_keys(settings, "ec2")
    assert keys == (BucketKey(results, key_arn),)
    # The compute never writes the results bucket: its policy names no key.
    assert "kms:" not in audit.print_policy(settings, "ec2", "instance", keys)[0]
    user_with_policy(audit_world, monkeypatch, json.loads(audit.print_policy(settings, "ec2", "caller", keys)[0]))
    report = run(settings, simulator=denied_simulator())
    found = _findings(report)
    results_finding = found["s3.results.encryption"]
    assert results_finding.severity is Severity.OK and "aws:kms:dsse" in results_finding.summary
    assert found["iam.caller.kms"].severity is Severity.OK, found["iam.caller.kms"]
    assert "iam.role.kms" not in found
    assert errors(report) == {}


def test_the_aws_managed_key_needs_no_statement_and_the_audit_says_why(audit_world):
    _encrypt(audit_world, audit_world.bucket, "aws:kms")  # no key id: S3 uses aws/s3
    settings = audit_world.settings()
    keys, notes = audit.read_bucket_keys(settings, "ec2")
    [key] = keys
    assert key.aws_managed and key.bucket == audit_world.bucket
    assert any("aws/s3" in note and "every principal of account" in note for note in notes)
    for which in ("caller", "instance"):
        assert not _statements(audit.print_policy(settings, "ec2", which, keys)[0], "kms:Decrypt")
    report = run(settings)
    finding = _findings(report)["s3.staging.encryption"]
    assert finding.severity is Severity.INFO and "aws/s3" in finding.summary
    assert "through S3" in finding.detail and "other accounts cannot" in finding.detail
    assert errors(report) == {}


@pytest.mark.parametrize("state", ["Disabled", "PendingDeletion"])
def test_a_key_that_cannot_be_used_is_an_error(audit_world, state):
    key_arn, _alias = _customer_key(audit_world)
    _encrypt(audit_world, audit_world.bucket, "aws:kms", key_arn)
    kms, key_id = audit_world.client("kms"), key_arn.rsplit("/", 1)[1]
    if state == "Disabled":
        kms.disable_key(KeyId=key_id)
    else:
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    report = run(audit_world.settings())
    finding = errors(report)["s3.staging.encryption"]
    assert state in finding.summary and "every upload and download fails" in finding.detail
    assert f"--key-id {key_arn}" in finding.fix


def test_unreadable_encryption_is_unknown_and_noted(audit_world):
    from tests.helpers.audit import fail_call

    def deny(ctx):
        fail_call(ctx.client("s3"), "GetBucketEncryption", "AccessDenied", "Access Denied")

    report = run(audit_world.settings(), prepare=deny)
    finding = _findings(report)["s3.staging.encryption"]
    assert finding.severity is Severity.UNKNOWN and "AccessDenied" in finding.detail
    assert "s3:GetEncryptionConfiguration" in finding.fix
    assert "s3:GetEncryptionConfiguration" in audit.print_policy(audit_world.settings(), "ec2", "caller")[0]


def test_cli_prints_the_key_in_the_policy(audit_world):
    from tests.helpers.cli import run_cli

    key_arn, alias_arn = _customer_key(audit_world)
    _encrypt(audit_world, audit_world.bucket, "aws:kms", alias_arn)
    env = {
        "AWS_REGION": REGION,
        "FC_EVAL_S3_BUCKET": audit_world.bucket,
        "FCEVAL_INSTANCE_PROFILE": audit_world.profile,
    }
    state = audit_world.tmp_path / "cli-state"
    res = run_cli("audit", "--backend", "ecs", "--print-policy", "instance", state_dir=state, env=env)
    assert res.code == 0, res.err
    [statement] = _statements(res.out, "kms:GenerateDataKey")
    assert statement["Resource"] == key_arn
    assert f"with key {key_arn}" in res.err
