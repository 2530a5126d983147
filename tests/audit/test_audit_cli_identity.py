"""boto3 and the `aws` CLI act as one identity: with FCEVAL_AWS_COMMAND_PREFIX set (which only the
CLI runs), the audit asks `PREFIX aws sts get-caller-identity` and compares it with boto3's caller."""

from __future__ import annotations

import sys

from fceval_tui.services import audit
from fceval_tui.services.audit_checks import Severity
from tests.helpers.audit import ACCOUNT, AllowAll

CALLER = f"arn:aws:sts::{ACCOUNT}:user/moto"  # what moto's sts:GetCallerIdentity answers

# A stand-in for a credential wrapper (aws-vault exec P --): it answers the CLI call it wraps itself.
WRAPPER = """import json, sys
words = sys.argv[1:]
assert words[0] == "aws" and words[-4:] == ["sts", "get-caller-identity", "--output", "json"], words
answer = {answer!r}
if answer is None:
    sys.stderr.write("\\naws: [ERROR]: The SSO session associated with this profile has expired or is otherwise "
                     "invalid. To refresh this SSO session run aws sso login with the corresponding profile.\\n")
    sys.exit(255)
print(json.dumps({{"UserId": "AIDA", "Account": answer.split(":")[4], "Arn": answer}}))
"""


def cli_finding(audit_world, tmp_path, answer):
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER.format(answer=answer))
    settings = audit_world.settings(FCEVAL_AWS_COMMAND_PREFIX=f"{sys.executable} {wrapper}")
    report = audit.run_audit(settings, "ec2", context=audit.make_context(settings, "ec2", simulator=AllowAll()))
    return next(f for f in report.findings if f.id == "identity.cli")


def test_the_same_identity_through_the_prefix_is_ok(audit_world, tmp_path):
    finding = cli_finding(audit_world, tmp_path, CALLER)
    assert finding.severity is Severity.OK and CALLER in finding.summary


def test_another_account_through_the_prefix_is_an_error_naming_both(audit_world, tmp_path):
    other = "arn:aws:sts::999999999999:assumed-role/Admin/me"
    finding = cli_finding(audit_world, tmp_path, other)
    assert finding.severity is Severity.ERROR and "different AWS accounts" in finding.summary
    assert other in finding.detail and CALLER in finding.detail and "AWS_PROFILE" in finding.fix


def test_another_principal_of_the_account_is_a_warning(audit_world, tmp_path):
    finding = cli_finding(audit_world, tmp_path, f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/me")
    assert finding.severity is Severity.WARNING and "different identities" in finding.summary


def test_a_prefix_whose_credentials_expired_says_so(audit_world, tmp_path):
    finding = cli_finding(audit_world, tmp_path, None)
    assert finding.severity is Severity.WARNING and "SSO session associated with this profile has expired" in (
        finding.detail
    )


def test_without_a_prefix_nothing_is_compared(audit_world):
    settings = audit_world.settings()
    report = audit.run_audit(settings, "ec2", context=audit.make_context(settings, "ec2", simulator=AllowAll()))
    assert not [f for f in report.findings if f.id == "identity.cli"]
