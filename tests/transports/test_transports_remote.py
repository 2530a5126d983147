"""Exit-code markers through a real shell, chatter filtering, and the bounded retry."""

from __future__ import annotations

import random
import subprocess

import pytest

from fceval_tui.errors import TransientError
from fceval_tui.transports.aws_cli import aws_cli_argv
from fceval_tui.transports.markers import Markers, parse_marked, wrap_command
from fceval_tui.transports.retry import Retryable, RetryPolicy, retry, transient_hint


def _through_shell(argv, stdin=None, chatter=True):
    markers = Markers()
    out = subprocess.run(["sh", "-c", wrap_command(argv, markers, stdin)], capture_output=True, text=True).stdout
    if chatter:  # what session-manager-plugin adds around a session, with a terminal's CRLFs
        out = "\r\nStarting session with SessionId: u-0123\r\n" + out.replace("\n", "\r\n")
        out += "\r\n\r\nExiting session with sessionId: u-0123.\r\n\r\n"
    return parse_marked(out, markers)


@pytest.mark.parametrize(
    ("argv", "code", "payload"),
    [
        (["sh", "-c", "printf 'a\\nb\\n'; exit 7"], 7, "a\nb\n"),
        (["printf", "no newline"], 0, "no newline"),
        (["true"], 0, ""),
        (["echo", "x; touch /tmp/pwned-fceval", "$(reboot)"], 0, "x; touch /tmp/pwned-fceval $(reboot)\n"),
    ],
)
def test_markers_recover_payload_and_exit_code(argv, code, payload):
    out = _through_shell(argv)
    assert (out.started, out.exit_code, out.payload) == (True, code, payload)
    assert out.other == ""


def test_stdin_is_embedded():
    out = _through_shell(["tr", "a-z", "A-Z"], stdin=b"hello 'quoted' $HOME\n", chatter=False)
    assert out.payload == "HELLO 'QUOTED' $HOME\n"


def test_markers_from_another_invocation_are_not_trusted():
    out = parse_marked("__FCEVAL_BEGIN_x__\nhi\n__FCEVAL_RC_x__=0\n", Markers())
    assert (out.started, out.exit_code) == (False, None)


def test_a_session_cut_mid_command_has_no_exit_code():
    markers = Markers()
    out = parse_marked(f"{markers.begin}\npartial output\n", markers)
    assert (out.started, out.exit_code, out.payload) == (True, None, "partial output\n")


def test_transient_hints_name_cause_and_fix():
    hint = transient_hint("An error occurred (TargetNotConnectedException) when calling ExecuteCommand")
    assert "not connected" in hint.cause and "ssmmessages" in hint.fix
    assert "ECS Exec agent" in transient_hint("The execute command agent isn’t running").cause
    assert transient_hint("AccessDeniedException") is None


def test_retry_backs_off_within_bounds_then_succeeds():
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=5, base=1.0, cap=3.0, sleep=sleeps.append, rng=random.Random(1))
    calls = iter([Retryable(transient_hint("ThrottlingException"), "slow down")] * 4 + ["done"])

    def attempt():
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert retry(attempt, policy, "thing") == "done"
    assert len(sleeps) == 4
    assert all(0 <= s <= min(3.0, 2**i) for i, s in enumerate(sleeps))


def test_retry_gives_up_with_the_likely_cause_and_fix():
    policy = RetryPolicy(attempts=3, sleep=lambda s: None)
    hint = transient_hint("InvalidInstanceId")
    with pytest.raises(TransientError) as caught:
        retry(lambda: (_ for _ in ()).throw(Retryable(hint, "i-0abc not online")), policy, "SSM SendCommand")
    assert "after 3 attempts" in str(caught.value) and "registered with SSM" in str(caught.value)
    assert "AmazonSSMManagedInstanceCore" in caught.value.fix


def test_non_retryable_errors_pass_through_at_once():
    calls = []

    def attempt():
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError):
        retry(attempt, RetryPolicy(sleep=lambda s: None), "x")
    assert len(calls) == 1


def test_aws_cli_argv_puts_the_prefix_first():
    assert aws_cli_argv(("aws-vault", "exec", "prof", "--"), "eu-west-1", None, "ecs", "list-tasks") == [
        "aws-vault",
        "exec",
        "prof",
        "--",
        "aws",
        "--region",
        "eu-west-1",
        "ecs",
        "list-tasks",
    ]
