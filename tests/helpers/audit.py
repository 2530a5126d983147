"""Plain helpers for the audit and teardown tests (fixtures are in audit_fixtures.py).

moto lacks iam:SimulatePrincipalPolicy; `AllowAll` answers it for the tests that are not about
the caller's permissions, and the permission tests use botocore's Stubber on a real IAM client.
"""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

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
