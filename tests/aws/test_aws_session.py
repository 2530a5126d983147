"""Sessions, clients and the classification of AWS errors into the runner's error kinds."""

from __future__ import annotations

import pytest

from fceval_tui.backends import aws
from fceval_tui.domain import prices
from fceval_tui.errors import CapacityError, PermanentError, ThrottlingError, TransientError, UserError
from tests.helpers.aws import client_error


def test_one_session_per_profile_and_region_shared_by_clients():
    first = aws.AwsClients("us-east-1", "", ("ec2", "s3"))
    second = aws.AwsClients("us-east-1", "", ("ecs",))
    assert first.session is second.session
    assert aws.AwsClients("eu-west-1", "", ("ec2",)).session is not first.session
    assert first.ec2.meta.config.retries["mode"] == "standard"
    assert first.ec2 is first.ec2  # built once, up front
    with pytest.raises(AttributeError, match="no batch client"):
        first.batch  # noqa: B018


def test_unknown_profile_is_a_user_error_with_a_fix(monkeypatch, tmp_path):
    config = tmp_path / "config"
    config.write_text("[profile other]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    with pytest.raises(UserError) as info:
        aws.session_for("us-east-1", "no-such-profile-for-fceval")
    assert "AWS_PROFILE" in info.value.fix


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        ("InsufficientInstanceCapacity", "no capacity", CapacityError),
        ("VcpuLimitExceeded", "You have requested more vCPU capacity", CapacityError),
        ("MaxSpotInstanceCountExceeded", "max spot instance count exceeded", CapacityError),
        ("ClientException", "Capacity is unavailable at this time", CapacityError),
        ("RequestLimitExceeded", "Request limit exceeded.", ThrottlingError),
        ("ThrottlingException", "Rate exceeded", ThrottlingError),
        ("SlowDown", "Please reduce your request rate.", ThrottlingError),
        ("ServiceUnavailable", "Service is unavailable", TransientError),
        ("InvalidAMIID.NotFound", "The image id '[ami-1]' does not exist", PermanentError),
        ("UnauthorizedOperation", "You are not authorized", PermanentError),
        ("AccessDenied", "Access Denied", PermanentError),
        ("InvalidParameterValue", "Value (x) for parameter iamInstanceProfile.name is invalid", PermanentError),
    ],
)
def test_client_errors_are_classified(code, message, kind):
    error = aws.classify(client_error(code, message, "RunInstances"), "doing it")
    assert type(error) is kind
    assert str(error) == f"doing it: {code}: {message}" and error.fix


def test_each_kind_of_error_names_its_class():
    classes = {
        code: aws.classify(client_error(code, "x", "RunInstances"), "x").error_class
        for code in ("InsufficientInstanceCapacity", "ThrottlingException", "ServiceUnavailable", "AccessDenied")
    }
    assert classes == {
        "InsufficientInstanceCapacity": "capacity",
        "ThrottlingException": "throttling",
        "ServiceUnavailable": "lost_session",
        "AccessDenied": "setup",
    }


def test_capacity_is_also_transient_and_permanent_errors_carry_their_fix():
    assert aws.classify(client_error("VcpuLimitExceeded", "x", "RunInstances"), "x").transient
    profile = aws.classify(client_error("InvalidParameterValue", "bad iamInstanceProfile.name", "RunInstances"), "x")
    assert "FCEVAL_INSTANCE_PROFILE" in profile.fix


def test_missing_credentials_error_is_a_user_error():
    from botocore.exceptions import NoCredentialsError

    error = aws.classify(NoCredentialsError(), "listing instances")
    assert isinstance(error, UserError) and "aws sso login" in error.fix


def test_iam_action_of_operations():
    assert aws.iam_actions("s3", "HeadObject") == ("s3:GetObject",)
    assert aws.iam_actions("s3", "CopyObject") == ("s3:GetObject", "s3:PutObject")
    assert aws.iam_actions("ec2", "RunInstances") == ("ec2:RunInstances",)
    assert aws.iam_actions("tagging", "GetResources") == ("tag:GetResources",)


def test_cost_table_is_approximate_and_never_invents_prices():
    assert prices.ec2_hourly("c5ad.large") == pytest.approx(0.086)
    assert prices.ec2_hourly("c5ad.large", spot_max_price=0.03) == 0.03
    assert prices.ec2_hourly("x9.unknown") is None
    assert prices.fargate_hourly(1024, 2048) == pytest.approx(0.04048 + 2 * 0.004445)
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert prices.cost_so_far(1.0, start, start + timedelta(minutes=30)) == 0.5
    assert prices.cost_so_far(None, start, start + timedelta(hours=1)) == 0.0


def test_prices_module_does_not_import_boto3():
    import subprocess
    import sys

    code = "import sys, fceval_tui.domain.prices; print('boto3' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
