"""run_on_pty: a terminal of the child's own, read to the end, and nothing left behind."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from fceval_tui.transports.pty_run import run_on_pty
from tests.helpers.ecs_double import pids_with


def test_the_child_gets_a_terminal_that_is_not_ours_and_its_own_session():
    probe = "import os; print(os.isatty(0), os.ttyname(0), os.getsid(0) == os.getpid(), os.getpgrp() == os.getpid())"
    result = run_on_pty([sys.executable, "-c", probe], timeout=30)
    isatty, name, session_leader, group_leader = result.output.decode().split()
    assert result.returncode == 0 and isatty == "True"
    assert session_leader == group_leader == "True"
    ours = {os.ttyname(fd) for fd in (0, 1, 2) if os.isatty(fd)}
    assert name not in ours


def test_output_and_exit_code_come_back_with_stderr_merged():
    result = run_on_pty(["sh", "-c", "echo out; echo err >&2; exit 5"], timeout=30)
    assert result.returncode == 5 and result.output == b"out\nerr\n"  # raw mode: no CR added


def test_a_timeout_kills_the_whole_group(monkeypatch):
    marker = uuid.uuid4().hex
    monkeypatch.setenv("FCEVAL_TEST_PTY", marker)
    with pytest.raises(TimeoutError):
        run_on_pty(["sh", "-c", "sleep 120 & sleep 120"], timeout=1)
    assert pids_with("FCEVAL_TEST_PTY", marker) == []


def test_what_the_child_left_holding_the_terminal_does_not_keep_it_waiting(monkeypatch):
    marker = uuid.uuid4().hex
    monkeypatch.setenv("FCEVAL_TEST_PTY", marker)
    result = run_on_pty(["sh", "-c", "sleep 120 & echo started"], timeout=60)
    assert (result.returncode, result.output) == (0, b"started\n")
    assert pids_with("FCEVAL_TEST_PTY", marker) == []


def test_a_missing_program_raises_file_not_found():
    with pytest.raises(FileNotFoundError):
        run_on_pty(["/nonexistent/fceval-no-such-aws"], timeout=5)
