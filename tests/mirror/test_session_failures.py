"""A session that cannot attach says why: the remote's words are classified (session_failure.py), and
a mirror whose every session fails the same way tells it (and gives up when retrying cannot help)
instead of retrying silently with nothing on screen.
The local ones use tests/helpers/session_user.py: the local tmux transport with sessions as another
OS user, as Session Manager's are.
"""

from __future__ import annotations

import io
import os
import shutil

import pytest

from fceval_tui.services.mirror.session_failure import (
    STATUS_FIX,
    FailureStreak,
    SessionError,
    classify,
    meaningful_text,
)
from fceval_tui.services.mirror.tail import tail
from fceval_tui.transports.retry import RetryPolicy
from tests.helpers.session_user import SessionAsAnotherUser, session_user_tmpdir
from tests.helpers.tmux import clean_env

START = b"\r\nStarting session with SessionId: fceval-0a1b2c3d4e\r\n"
EXIT = b"\r\n\r\nExiting session with sessionId: fceval-0a1b2c3d4e.\r\n\r\n"
PLUGIN = (
    b"\r\nSessionManagerPlugin is not found. Please refer to SessionManager Documentation here: "
    b"http://docs.aws.amazon.com/console/systems-manager/session-manager-plugin-not-found\r\n"
)
NOT_CONNECTED = (
    b"\nAn error occurred (TargetNotConnected) when calling the StartSession operation: "
    b"i-0123456789abcdef0 is not connected.\n"
)
DENIED = (
    b"\nAn error occurred (AccessDeniedException) when calling the StartSession operation: User: "
    b"arn:aws:iam::123456789012:user/op is not authorized to perform: ssm:StartSession on resource: "
    b"arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0\n"
)
ECS_AGENT = (
    b"\nAn error occurred (InvalidParameterException) when calling the ExecuteCommand operation: The execute "
    b"command failed because execute command was not enabled when the task was run or the execute command "
    b"agent isn't running. Wait and try again or run a new task with execute command enabled and try again.\n"
)


def test_the_remotes_words_are_kept_and_the_chatter_dropped():
    assert meaningful_text(START + b"\x1b[?1034hno sessions\r\n" + EXIT) == "no sessions"
    assert classify(START + EXIT) is None  # a session that said nothing (a dropped stream)
    assert classify(b"") is None


@pytest.mark.parametrize(
    ("printed", "kind", "words", "fix", "permanent"),
    [
        (START + b"no sessions\r\n" + EXIT, "no-session", "no sessions", STATUS_FIX, True),
        (START + b"can't find session: $3\r\n" + EXIT, "no-session", "can't find session: $3", STATUS_FIX, True),
        (PLUGIN, "plugin", "SessionManagerPlugin is not found", "install session-manager-plugin", True),
        (NOT_CONNECTED, "not-connected", "(TargetNotConnected)", "SSM agent is not online", False),
        (DENIED, "denied", "not authorized to perform: ssm:StartSession", "--print-policy caller", True),
        (ECS_AGENT, "aws", "(InvalidParameterException)", "ECS Exec agent in the task is not running", False),
    ],
)
def test_each_failure_is_named_with_its_fix(printed, kind, words, fix, permanent):
    failure = classify(printed)
    assert failure is not None
    assert (failure.kind, failure.permanent) == (kind, permanent)
    assert words in failure.words and fix in failure.fix
    assert "Starting session" not in failure.words


def test_a_streak_is_due_after_three_identical_failures_or_five_seconds():
    now = [0.0]
    streak = FailureStreak(clock=lambda: now[0])
    missing = classify(b"no sessions\n")
    other = classify(NOT_CONNECTED)
    assert [streak.add(missing), streak.add(missing)] == [False, False]
    assert streak.add(other) is False  # a different failure starts again
    now[0] = 5.0
    assert streak.add(other) is True  # five seconds of the same failure
    streak.reset()
    assert [streak.add(missing) for _ in range(3)] == [False, False, True]
    assert FailureStreak().add(classify(PLUGIN)) is True  # certain at once


@pytest.fixture
def session_tmpdir():
    with session_user_tmpdir() as path:
        yield path


def test_tail_says_why_when_every_session_misses_the_server(driven_pane, session_tmpdir):
    """The field report: `tail` of a live job printed nothing while every session got "no sessions"."""
    transport = SessionAsAnotherUser(session_tmpdir)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SessionError) as caught:
        tail(transport, driven_pane.server.args, driven_pane.session, True, out, err=err)
    assert "no sessions" in caught.value.problem and "sessions as another user" in caught.value.problem
    assert caught.value.fix == STATUS_FIX
    assert transport.sessions == 3  # three identical failures, then it says so
    assert out.getvalue() == ""


def test_a_failure_that_may_pass_is_told_and_retried(driven_pane, tmp_path, monkeypatch):
    """Sessions fail with an unrecognised word for a while, then attach: told once, then the lines follow."""
    from fceval_tui.services.mirror import Mirror

    other = tmp_path / "bin"
    other.mkdir()
    tmux = other / "tmux"
    counter = tmp_path / "count"
    # A `tmux` first on the sessions' PATH that fails (as a broken login shell would) three times.
    tmux.write_text(
        f"#!/bin/sh\nn=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}\n"
        f'[ "$n" -lt 3 ] && {{ echo "session shell: resource temporarily unavailable"; exit 1; }}\n'
        f'exec {_real_tmux()} "$@"\n'
    )
    tmux.chmod(0o755)
    transport = SessionAsAnotherUser(tmp_path)
    transport.session_env = {**clean_env(), "PATH": f"{other}{os.pathsep}{os.environ['PATH']}"}
    mirror = Mirror(
        transport,
        driven_pane.server.args,
        driven_pane.session,
        from_start=True,
        want_screen=False,
        retry_policy=RetryPolicy(attempts=8, base=0.01, cap=0.05),
    )
    told, lines, finished = [], [], False
    with mirror:
        driven_pane.emit(b"printed while sessions failed\n")
        for update in mirror:
            told += [update.session_failure] if update.session_failure else []
            lines += update.lines
            if lines and not finished:  # attached: the live part
                driven_pane.emit(b"after the failures\n")
                driven_pane.finish()
                finished = True
    assert lines == ["printed while sessions failed", "after the failures"]
    assert len(told) == 1 and "resource temporarily unavailable" in told[0] and "retrying" in told[0]


def _real_tmux() -> str:
    found = shutil.which("tmux")
    assert found
    return found
