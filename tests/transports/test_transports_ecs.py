"""ECS Exec through a fake `aws` on PATH: command construction, exit codes via markers, retries,
and the mirror (polling and streaming) over it against a real local tmux server."""

from __future__ import annotations

import pytest

from fceval_tui.errors import PermanentError, TransientError
from fceval_tui.services.mirror import Mirror
from fceval_tui.transports.ecs_exec import EcsExecTransport
from fceval_tui.transports.retry import RetryPolicy

TASK = "arn:aws:ecs:us-east-1:123456789012:task/eval/0123abcd"


def _transport(fake_aws, attempts=3, **kwargs) -> EcsExecTransport:
    return EcsExecTransport(
        "eval",
        TASK,
        "harness",
        region="us-east-1",
        command_prefix=(fake_aws.vault, "exec", "prof", "--"),
        retry_policy=RetryPolicy(attempts=attempts, sleep=lambda s: None),
        **kwargs,
    )


def test_exec_argv_shape():
    transport = EcsExecTransport("c", "t", "n", region="r", profile="p", command_prefix=("pre", "--"))
    assert transport.exec_argv("echo hi") == [
        "pre",
        "--",
        "aws",
        "--region",
        "r",
        "--profile",
        "p",
        "ecs",
        "execute-command",
        "--cluster",
        "c",
        "--task",
        "t",
        "--container",
        "n",
        "--interactive",
        "--command",
        "echo hi",
    ]


def test_run_recovers_the_exit_code_the_cli_loses(fake_aws, tmp_path):
    pwned = tmp_path / "pwned"
    result = _transport(fake_aws).run(["sh", "-c", 'printf "%s\\n" "$1"; exit 4', "sh", f"$(touch {pwned})"])
    assert (result.exit_code, result.stdout) == (4, f"$(touch {pwned})\n")
    assert not pwned.exists()
    assert fake_aws.prefix_calls()[0].startswith("exec prof -- aws --region us-east-1 ecs execute-command")


def test_stdin_is_refused_rather_than_put_in_the_command_line(fake_aws):
    # The command is visible in `ps` and in the ExecuteCommand request (CloudTrail).
    with pytest.raises(PermanentError, match="stdin") as caught:
        _transport(fake_aws).run(["cat"], stdin=b"https://bucket.s3.amazonaws.com/x?X-Amz-Signature=abc")
    assert "attach" in caught.value.fix
    assert fake_aws.calls() == [] and _transport(fake_aws).max_stdin_bytes == 0


def test_agent_not_running_is_retried_then_succeeds(fake_aws, monkeypatch):
    monkeypatch.setenv("FAKE_AWS_FAIL", "2|An error occurred (TargetNotConnectedException): not connected")
    assert _transport(fake_aws).run(["echo", "ok"]).stdout == "ok\n"
    assert len(fake_aws.calls()) == 3


def test_retries_are_bounded_and_the_error_names_the_cause(fake_aws, monkeypatch):
    monkeypatch.setenv("FAKE_AWS_FAIL", "9|The execute command agent isn't running")
    with pytest.raises(TransientError) as caught:
        _transport(fake_aws, attempts=2).run(["true"])
    assert "ECS Exec agent" in str(caught.value) and "enableExecuteCommand" in caught.value.fix
    assert len(fake_aws.calls()) == 2


def test_other_failures_are_permanent(fake_aws, monkeypatch):
    monkeypatch.setenv("FAKE_AWS_FAIL", "9|An error occurred (InvalidParameterException): cluster not found")
    with pytest.raises(PermanentError, match="cluster not found"):
        _transport(fake_aws).run(["true"])


def test_oversized_stdin_is_refused_with_a_fix(fake_aws):
    with pytest.raises(PermanentError, match="stdin"):
        _transport(fake_aws).run(["cat"], stdin=b"x" * 100_000)


@pytest.mark.parametrize("mode", ["poll", "stream"])
def test_mirror_over_ecs_exec(fake_aws, tmux_server, mode):
    pane = tmux_server.new_driven_pane()
    try:
        mirror = Mirror(_transport(fake_aws), tmux_server.args, pane.session, mode=mode, poll_interval=0)
        got: list[str] = []
        with mirror:
            pane.emit(b"one\n")
            got += mirror.poll(timeout=5).lines
            pane.emit(b"two\nthree\n")
            while len(got) < 3:
                got += mirror.poll(timeout=5).lines
            assert "three" in "\n".join(mirror.screen())
        assert got == ["one", "two", "three"]
    finally:
        pane.kill()


def test_a_session_that_ends_before_the_command_is_a_transient_failure_in_the_plugins_words(fake_aws):
    # session-manager-plugin at end of stdin: prints this and exits 0, so the CLI exits 0 with no output.
    (fake_aws.bin_dir / "aws").write_text(
        "#!/bin/sh\nprintf '\\r\\nStarting session with SessionId: u-1\\r\\nCannot perform start session: EOF\\r\\n'\n"
    )
    with pytest.raises(TransientError, match="Cannot perform start session: EOF") as caught:
        _transport(fake_aws, attempts=2).run(["true"])
    assert "2 attempts" in str(caught.value) and caught.value.fix


def test_typed_input_reaches_the_command_byte_for_byte_and_never_its_command_line(fake_aws):
    import hashlib

    data = bytes(range(256)) * 90  # every byte value, 23 KB: a terminal would act on many of them
    result = _transport(fake_aws).run_typed(["sh", "-c", "sha256sum; exit 3"], data)
    assert (result.exit_code, result.stdout.split()[0]) == (3, hashlib.sha256(data).hexdigest())
    assert not any("base64" in call and "AAECAwQF" in call for call in fake_aws.prefix_calls())
    with pytest.raises(ValueError):
        _transport(fake_aws).run_typed(["cat"], b"x" * (_transport(fake_aws).max_typed_input_bytes + 1))
