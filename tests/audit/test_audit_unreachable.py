"""An AWS the audit cannot reach, or can only half read, never passes the preflight (issue 10, item 7).

Unknown identity or reachability is an error that blocks a cloud launch (`--skip-preflight` still
overrides, and the ledger records it); a policy simulator that fails for any reason (denied,
throttled, unreachable, moto's HTTP 500 HTML page) gives way to reading the caller's policies,
and the finding says why in one line that never carries the page.
"""

from __future__ import annotations

import json
import socket

import boto3
import pytest
from botocore.stub import Stubber

from fceval_tui.errors import UserError
from fceval_tui.services import audit
from fceval_tui.services.audit_checks import Severity
from tests.helpers.aws import REGION
from tests.helpers.cli import run_cli


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def no_page(report) -> None:
    """Every finding reads as lines of text, never an HTML page or a multi-line dump."""
    for finding in report.findings:
        for text in (finding.summary, finding.detail):
            assert "<" not in text and "\n" not in text, finding


@pytest.fixture
def unreachable(audit_world, monkeypatch):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    return endpoint


def test_an_unreachable_aws_is_an_error_and_blocks_launch(audit_world, unreachable):
    from fceval_tui.services import launching

    settings = audit_world.settings()
    report = audit.run_audit(settings, "ec2")
    identity = next(f for f in report.findings if f.id == "identity.caller")
    assert identity.severity is Severity.ERROR and identity.summary == "AWS cannot be reached"
    assert unreachable in identity.detail and "--skip-preflight" in identity.fix
    assert not [f for f in report.findings if f.severity is Severity.OK and f.area != "local tools"]
    no_page(report)
    with pytest.raises(UserError) as caught:
        launching.check_can_launch(settings, skip_preflight=False)
    assert "identity.caller: AWS cannot be reached" in caught.value.problem
    assert "\n" not in caught.value.problem and "--skip-preflight" in caught.value.fix
    launching.check_can_launch(settings, skip_preflight=True)  # the override goes through


def test_the_override_is_recorded_in_the_ledger(audit_world, unreachable, ledger):
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.services import launching

    settings = audit_world.settings()
    run, _jobs = launching.create_run(ledger, settings, [JobSpec("aide", "hello")], skip_preflight=True)
    assert ledger.get_run(run.id).skip_preflight is True


def test_the_cli_audit_exits_1_when_aws_cannot_be_reached(audit_world, unreachable):
    env = {
        "AWS_ENDPOINT_URL": unreachable,
        "FC_EVAL_S3_BUCKET": audit_world.bucket,
        "FCEVAL_INSTANCE_PROFILE": audit_world.profile,
        "FCEVAL_EC2_SUBNET_ID": audit_world.network.public_subnet,
    }
    res = run_cli("audit", "--backend", "ec2", "--json", state_dir=audit_world.tmp_path / "cli", env=env)
    assert res.code == 1, res.err
    found = {f["id"]: f for f in json.loads(res.out)}
    assert found["identity.caller"]["severity"] == "error"
    assert found["identity.caller"]["summary"] == "AWS cannot be reached"


def _caller_with_the_printed_policy(audit_world, monkeypatch) -> None:
    settings = audit_world.settings()
    iam = audit_world.client("iam")
    name = f"caller-{audit_world.bucket[-8:]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name, PolicyName="fceval", PolicyDocument=audit.print_policy(settings, "ec2", "caller")[0]
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])


def _audit_with(audit_world, simulator):
    settings = audit_world.settings()
    ctx = audit.make_context(settings, "ec2", simulator=simulator)
    return audit.run_audit(settings, "ec2", context=ctx)


def _assert_fell_back(report, reason: str) -> None:
    found = {f.id: f for f in report.findings}
    for finding_id in ("iam.caller.actions", "iam.caller.passrole"):
        finding = found[finding_id]
        assert finding.severity is Severity.OK, finding
        assert f"iam:SimulatePrincipalPolicy failed ({reason})" in finding.detail
        assert "evaluated your attached and inline policies instead" in finding.detail
    no_page(report)


def test_a_simulator_answering_an_html_500_page_falls_back_to_the_policies(audit_world, monkeypatch):
    _caller_with_the_printed_policy(audit_world, monkeypatch)
    # moto does not implement SimulatePrincipalPolicy: its server answers HTTP 500 with an HTML page.
    simulator = audit_world.client("iam")
    report = _audit_with(audit_world, simulator)
    _assert_fell_back(report, "ResponseParserError: the endpoint answered with an HTML page, not an AWS reply")


def test_a_throttled_simulator_falls_back_to_the_policies(audit_world, monkeypatch):
    _caller_with_the_printed_policy(audit_world, monkeypatch)
    simulator = boto3.client("iam", region_name=REGION)
    stubber = Stubber(simulator)
    stubber.add_client_error("simulate_principal_policy", "Throttling", "Rate exceeded", 400)
    stubber.activate()
    _assert_fell_back(_audit_with(audit_world, simulator), "Throttling: Rate exceeded")


def test_an_unreachable_simulator_falls_back_to_the_policies(audit_world, monkeypatch):
    _caller_with_the_printed_policy(audit_world, monkeypatch)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    simulator = boto3.client("iam", region_name=REGION, endpoint_url=endpoint)
    _assert_fell_back(_audit_with(audit_world, simulator), f'Could not connect to the endpoint URL: "{endpoint}/"')


def test_an_html_error_reply_is_named_never_repeated():
    from botocore.exceptions import ClientError

    from fceval_tui.services.audit_checks.aws import describe_error

    page = "<!doctype html>\n<html lang=en>\n<title>502 Bad Gateway</title>\n<h1>Bad Gateway</h1>"
    exc = ClientError(
        {"Error": {"Code": "502", "Message": page}, "ResponseMetadata": {"HTTPStatusCode": 502}}, "GetRole"
    )
    assert describe_error(exc) == "ClientError: the endpoint answered with an HTTP 502 HTML page, not an AWS reply"
    assert describe_error(ValueError("a\n  b")) == "a b"
