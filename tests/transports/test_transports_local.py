"""The local transport for real: subprocess runs, pipe and pty streams."""

from __future__ import annotations

import uuid

import pytest

from fceval_tui.errors import PermanentError
from fceval_tui.transports.local import LocalTransport, ProcessStream
from tests.helpers.ecs_double import pids_with, wait_for


def test_run_returns_exit_code_stdout_stderr_and_feeds_stdin():
    result = LocalTransport().run(["sh", "-c", "cat; echo err >&2; exit 3"], stdin=b"in\n")
    assert (result.exit_code, result.stdout, result.stderr, result.ok) == (3, "in\n", "err\n", False)


def test_arguments_are_data_never_shell(tmp_path):
    target = tmp_path / "pwned"
    result = LocalTransport().run(["echo", f"x; touch {target}", "$(reboot)"])
    assert result.stdout == f"x; touch {target} $(reboot)\n"
    assert not target.exists()


def test_timeout_raises_timeout_error():
    with pytest.raises(TimeoutError):
        LocalTransport().run(["sleep", "5"], timeout=0.2)


def test_missing_program_is_a_permanent_error_naming_it():
    with pytest.raises(PermanentError, match="no-such-program-fceval"):
        LocalTransport().run(["no-such-program-fceval"])


@pytest.mark.parametrize("use_pty", [False, True])
def test_stream_round_trip_timeout_and_end(use_pty):
    stream = ProcessStream(["sh", "-c", "read line; echo got:$line; read other"], use_pty=use_pty)
    try:
        with pytest.raises(TimeoutError):
            stream.read(timeout=0.05)  # nothing written yet
        stream.write(b"hello\n")
        data = b""
        while b"got:hello" not in data:
            data += stream.read(timeout=5)
        # A raw pty does not echo what we typed, so the reply is the only text.
        assert b"hello\n" not in data.replace(b"got:hello", b"")
        stream.write(b"bye\n")
        while stream.read(timeout=5):
            pass  # drain to end of stream
        assert stream.closed
    finally:
        stream.close()
    assert stream.read() == b""


def test_close_stops_the_child():
    stream = ProcessStream(["sleep", "30"])
    stream.close()
    assert stream.returncode is not None
    assert stream.closed


@pytest.mark.parametrize("use_pty", [False, True])
def test_close_stops_what_the_child_started(use_pty, monkeypatch):
    # `aws ecs execute-command` runs session-manager-plugin as its child: closing must end both.
    marker = uuid.uuid4().hex
    monkeypatch.setenv("FCEVAL_TEST_STREAM", marker)
    stream = ProcessStream(["sh", "-c", "sleep 120 & echo started; wait"], use_pty=use_pty)
    seen = b""
    while b"started" not in seen:
        seen += stream.read(timeout=10)
    stream.close()
    wait_for(lambda: not pids_with("FCEVAL_TEST_STREAM", marker), 10, "the child's own child to end")
