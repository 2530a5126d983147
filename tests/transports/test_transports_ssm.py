"""SSM: SendCommand/GetCommandInvocation with botocore's Stubber (moto's SSM runs nothing and has no
truncation), the full output read back from moto's S3, and start-session through a fake `aws`."""

from __future__ import annotations

import json
import shlex

import boto3
import pytest
from botocore.stub import ANY, Stubber

from fceval_tui.errors import PermanentError, TransientError
from fceval_tui.services.mirror import Mirror
from fceval_tui.transports.retry import RetryPolicy
from fceval_tui.transports.ssm import STDOUT_LIMIT, TRUNCATION_MARK, SsmTransport
from tests.helpers.aws import STAGING
from tests.helpers.ssm_double import agent_truncate

INSTANCE = "i-0123456789abcdef0"
CMD = "0b1e2c3d-4f50-6172-8394-a5b6c7d8e9f0"


@pytest.fixture
def ssm():
    client = boto3.client("ssm", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _transport(client, sleeps=None, **kwargs) -> SsmTransport:
    sleeps = sleeps if sleeps is not None else []
    return SsmTransport(
        client,
        INSTANCE,
        retry_policy=RetryPolicy(attempts=3, sleep=sleeps.append),
        sleep=sleeps.append,
        poll_interval=0.5,
        **kwargs,
    )


def _send_ok(stubber, argv, command_id=CMD, **extra):
    expected = {
        "InstanceIds": [INSTANCE],
        "DocumentName": "AWS-RunShellScript",
        "Parameters": {"commands": [shlex.join(argv)], "executionTimeout": ["60"]},
        "Comment": ANY,
        **extra,
    }
    stubber.add_response("send_command", {"Command": {"CommandId": command_id}}, expected)


def _invocation(stubber, status, stdout="", stderr="", code=0, command_id=CMD):
    stubber.add_response(
        "get_command_invocation",
        {
            "CommandId": command_id,
            "InstanceId": INSTANCE,
            "Status": status,
            "ResponseCode": code,
            "StandardOutputContent": stdout,
            "StandardErrorContent": stderr,
        },
        {"CommandId": command_id, "InstanceId": INSTANCE},
    )


def test_run_sends_quoted_argv_and_polls_until_done(ssm):
    client, stubber = ssm
    argv = ["tmux", "-L", "x", "send-keys", "-t", "job", "echo $(reboot); touch /tmp/pwned"]
    _send_ok(stubber, argv)
    stubber.add_client_error("get_command_invocation", "InvocationDoesNotExist")  # not visible yet
    _invocation(stubber, "InProgress")
    _invocation(stubber, "Failed", stdout="out\n", stderr="boom\n", code=2)
    sleeps: list[float] = []
    result = _transport(client, sleeps).run(argv)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "out\n", "boom\n")
    assert sleeps == [0.5, 0.5]


def test_throttling_is_retried_with_backoff(ssm):
    client, stubber = ssm
    stubber.add_client_error("send_command", "ThrottlingException", "Rate exceeded")
    _send_ok(stubber, ["true"])
    _invocation(stubber, "Success")
    sleeps: list[float] = []
    assert _transport(client, sleeps).run(["true"]).ok
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 1.0


def test_an_instance_not_yet_online_gives_up_naming_the_cause(ssm):
    client, stubber = ssm
    for _ in range(3):
        stubber.add_client_error("send_command", "InvalidInstanceId", "Instances not in a valid state")
    with pytest.raises(TransientError) as caught:
        _transport(client).run(["true"])
    assert "not (yet) registered with SSM" in str(caught.value)
    assert "AmazonSSMManagedInstanceCore" in caught.value.fix


def test_access_denied_is_permanent_at_once(ssm):
    client, stubber = ssm
    stubber.add_client_error("send_command", "AccessDeniedException", "no")
    with pytest.raises(PermanentError, match="refused"):
        _transport(client).run(["true"])


def test_timed_out_command_raises_timeout(ssm):
    client, stubber = ssm
    _send_ok(stubber, ["sleep", "100"])
    _invocation(stubber, "TimedOut", code=-1)
    with pytest.raises(TimeoutError):
        _transport(client).run(["sleep", "100"])


def test_truncated_output_is_read_in_full_from_s3(ssm, aws_env):
    client, stubber = ssm
    s3 = aws_env.client("s3")  # the shared moto server (an in-process mock would reset it for others)
    full = "".join(f"line {i}\n" for i in range(10_000))  # ~100 kB
    key = f"runs/x/ssm-output/{CMD}/{INSTANCE}/awsrunShellScript/0.awsrunshellscript/stdout"
    s3.put_object(Bucket=STAGING, Key=key, Body=full.encode())
    _send_ok(stubber, ["cat", "big"], OutputS3BucketName=STAGING, OutputS3KeyPrefix="runs/x/ssm-output")
    _invocation(stubber, "Success", stdout=agent_truncate(full, STDOUT_LIMIT))
    transport = _transport(client, s3_client=s3, output_bucket=STAGING, output_prefix="runs/x/ssm-output/")
    assert transport.run(["cat", "big"]).stdout == full


def test_truncation_is_counted_in_bytes_not_characters(ssm, aws_env):
    """Multibyte output is cut at 24,000 bytes, far fewer characters: never handed on as if whole."""
    client, stubber = ssm
    s3 = aws_env.client("s3")
    full = "".join(f"ligne {i} é→✓\n" for i in range(3_000))  # ~51 kB, ~39,000 characters
    key = f"bytes-out/{CMD}/{INSTANCE}/awsrunShellScript/0.awsrunshellscript/stdout"
    s3.put_object(Bucket=STAGING, Key=key, Body=full.encode())
    cut = agent_truncate(full, STDOUT_LIMIT)
    assert len(cut) < STDOUT_LIMIT and cut.endswith(TRUNCATION_MARK)
    _send_ok(stubber, ["cat", "big"], OutputS3BucketName=STAGING, OutputS3KeyPrefix="bytes-out")
    _invocation(stubber, "Success", stdout=cut)
    transport = _transport(client, s3_client=s3, output_bucket=STAGING, output_prefix="bytes-out")
    assert transport.run(["cat", "big"]).stdout == full


def test_truncated_output_without_a_bucket_is_an_error_with_a_fix(ssm):
    client, stubber = ssm
    _send_ok(stubber, ["cat", "big"])
    _invocation(stubber, "Success", stdout=agent_truncate("x" * 30_000, STDOUT_LIMIT))
    with pytest.raises(PermanentError) as caught:
        _transport(client).run(["cat", "big"])
    assert "truncated" in str(caught.value) and "S3 output bucket" in caught.value.fix


def test_session_argv_honours_prefix_region_and_profile():
    transport = SsmTransport(
        None, INSTANCE, region="eu-west-1", profile="eval", command_prefix=("aws-vault", "exec", "p", "--")
    )
    argv = transport.interactive_argv(["tmux", "-L", "s", "attach-session", "-t", "job 1"])
    assert argv[:10] == [
        "aws-vault",
        "exec",
        "p",
        "--",
        "aws",
        "--region",
        "eu-west-1",
        "--profile",
        "eval",
        "ssm",
    ]
    assert argv[10:15] == ["start-session", "--target", INSTANCE, "--document-name", "AWS-StartInteractiveCommand"]
    assert json.loads(argv[16]) == {"command": ["tmux -L s attach-session -t 'job 1'"]}


class LocalSsmAgent:
    """An SSM client double whose 'instance' is this machine: SendCommand runs the script here."""

    def __init__(self) -> None:
        self.results: dict[str, dict] = {}

    def send_command(self, **params):
        import subprocess
        import uuid

        script = params["Parameters"]["commands"][0]
        proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
        command_id = str(uuid.uuid4())
        self.results[command_id] = {
            "Status": "Success" if proc.returncode == 0 else "Failed",
            "ResponseCode": proc.returncode,
            "StandardOutputContent": agent_truncate(proc.stdout, STDOUT_LIMIT),
            "StandardErrorContent": proc.stderr,
        }
        return {"Command": {"CommandId": command_id}}

    def get_command_invocation(self, CommandId, InstanceId):  # noqa: N803 (boto3's parameter names)
        return self.results[CommandId]


def test_mirror_streams_through_an_ssm_session(fake_aws, tmux_server):
    pane = tmux_server.new_driven_pane()
    try:
        transport = SsmTransport(
            LocalSsmAgent(), INSTANCE, command_prefix=(fake_aws.vault, "exec", "prof", "--"), poll_interval=0.01
        )
        mirror = Mirror(transport, tmux_server.args, pane.session, mode="stream", from_start=True)
        got: list[str] = []
        with mirror:
            pane.emit(b"over ssm\n\x1b[33mcoloured\x1b[0m\n")
            pane.finish()
            for update in mirror:
                got += update.lines
        assert got == ["over ssm", "coloured"]
        assert fake_aws.calls()[0][:2] == ["ssm", "start-session"]
        assert fake_aws.prefix_calls()  # the prefix ran first
    finally:
        pane.kill()
