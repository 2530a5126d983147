"""Plain helpers for the audit and teardown tests (fixtures are in audit_fixtures.py).

moto lacks iam:SimulatePrincipalPolicy; `AllowAll` answers it for the tests that are not about
the caller's permissions, and the permission tests use botocore's Stubber on a real IAM client.
"""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

from fceval_tui.services import audit
from fceval_tui.services.audit_checks import Severity

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
SSM_POLICY_NAME = "AmazonSSMManagedInstanceCore"
SSM_POLICY_ARN = f"arn:aws:iam::aws:policy/{SSM_POLICY_NAME}"
EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


class AllowAll:
    """Stands in for the IAM policy simulator: every action is allowed (moto has no simulator)."""

    def get_paginator(self, name: str):
        assert name == "simulate_principal_policy"
        return self

    def paginate(self, **params):
        resource = params["ResourceArns"][0]
        yield {
            "EvaluationResults": [
                {"EvalActionName": a, "EvalDecision": "allowed", "EvalResourceName": resource}
                for a in params["ActionNames"]
            ],
            "IsTruncated": False,
        }


def ensure_ssm_managed_policy() -> None:
    """Load the one AWS-managed policy the audit looks for into the running moto IAM backend.

    moto loads AWS-managed policies only when configured before its IAM backend is created, and
    the shared server's backend already exists; loading all ~1,000 would also cost seconds."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.iam.models import AWSManagedPolicy, iam_backends

    backend = iam_backends[ACCOUNT]["aws"]
    if SSM_POLICY_ARN in backend.managed_policies:
        return
    data = json.loads(aws_managed_policies_data)[SSM_POLICY_NAME]
    managed = AWSManagedPolicy.from_data(SSM_POLICY_NAME, ACCOUNT, REGION, data)
    backend.aws_managed_policies.append(managed)
    backend.managed_policies[managed.arn] = managed


def fail_call(client, operation: str, code: str, message: str = "denied by the test", when=None) -> None:
    """Make `operation` on this client fail with `code` (when `when(params)` holds), before it is sent."""

    def handler(params, **_: object):
        if when is None or when(params):
            raise ClientError(
                {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 403}}, operation
            )

    client.meta.events.register(
        f"before-parameter-build.{client.meta.service_model.service_id.hyphenize()}.{operation}", handler
    )


def answer_call(client, operation: str, reply: dict) -> None:
    """Answer `operation` on this client with `reply` without sending it (for APIs moto lacks)."""
    from botocore.awsrequest import AWSResponse

    def handler(**_: object):
        return AWSResponse("https://stub.invalid", 200, {}, None), reply

    client.meta.events.register(f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}", handler)


def run(settings, simulator=None, backend="ec2", prepare=None):
    """The audit for `backend`, the simulator standing in for IAM's (AllowAll unless given)."""
    ctx = audit.make_context(settings, backend, simulator=simulator or AllowAll())
    if prepare:
        prepare(ctx)
    return audit.run_audit(settings, backend, context=ctx)


def errors(report) -> dict:
    return {f.id: f for f in report.findings if f.severity is Severity.ERROR}


def only_error(report, finding_id: str):
    found = errors(report)
    assert set(found) == {finding_id}, {k: v.summary for k, v in found.items()}
    finding = found[finding_id]
    assert finding.fix, finding
    return finding


def user_with_policy(audit_world, monkeypatch, document: dict) -> str:
    """An IAM user whose keys the audit then uses (moto's STS answers with that user)."""
    iam = audit_world.client("iam")
    name = f"caller-{audit_world.bucket[-8:]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="fceval", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def denied_simulator():
    """A real IAM client whose SimulatePrincipalPolicy is refused (the audit then reads the policies)."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("iam", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error("simulate_principal_policy", "AccessDenied", "not allowed to simulate", 403)
    stubber.activate()
    return client
