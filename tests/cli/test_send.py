"""`fceval-tui send`: input into a live local session, waiting for a pattern or a command's exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.helpers.cli import run_cli


def _live_shell_job(state_dir, fast_env) -> tuple[subprocess.Popen, str]:
    """A run whose only job is an interactive shell in its tmux session (driven by a runner)."""
    env = dict(fast_env, FCEVAL_RUN_COMMAND="sh -i", FCEVAL_GRADE_COMMAND="", FCEVAL_JOB_TIMEOUT_MINUTES="5")
    full = {**os.environ, **env}
    argv = [sys.executable, "-m", "fceval_tui", "--state-dir", str(state_dir), "launch", "--task-id", "t"]
    proc = subprocess.Popen([*argv, "--agent", "a", "--json"], env=full, stdout=subprocess.PIPE, text=True)
    run_id = json.loads(proc.stdout.readline())["run_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        (job,) = json.loads(run_cli("status", run_id, "--json", state_dir=state_dir).out)
        if job["state"] == "running":
            return proc, job["id"]
        time.sleep(0.2)
    raise AssertionError("the shell job never ran")


def test_send_waits_for_a_pattern_and_returns_a_commands_exit_code(state_dir, fast_env):
    proc, job = _live_shell_job(state_dir, fast_env)
    try:
        res = run_cli("send", job, "--text", "echo hello-$((40+2))\n", "--wait-for", "hello-42", state_dir=state_dir)
        assert res.code == 0, res.err
        res = run_cli("send", job, "--text", "(exit 7)", "--wait-exit", "--timeout", "20", state_dir=state_dir)
        assert res.code == 7, res
        res = run_cli("send", job, "--text", "(exit 3)", "--wait-exit", "--json", state_dir=state_dir)
        outcome = json.loads(res.out)
        assert res.code == 3 and outcome["exit_code"] == 3 and outcome["shown"] is True, res
        assert (
            outcome["job"] == job and outcome["waited_for"] == "exit" and sorted(outcome["sent"]) == ["bytes", "sha256"]
        )
        res = run_cli(
            "send",
            job,
            "--keys",
            "Enter",
            "--wait-for",
            "nev(er)-shown",
            "--timeout",
            "1",
            "--json",
            state_dir=state_dir,
        )
        assert res.code == 1 and json.loads(res.out) == {
            "job": job,
            "sent": {"keys": 1},
            "waited_for": "nev(er)-shown",
            "shown": False,
            "match": None,
            "exit_code": None,
        }, res
        res = run_cli(
            "send",
            job,
            "--keys",
            "e",
            "c",
            "h",
            "o",
            "Enter",
            "--wait-for",
            "never-shown",
            "--timeout",
            "1",
            state_dir=state_dir,
        )
        assert res.code == 1 and "did not show within 1s" in res.out
        sends = [
            e for e in json.loads(run_cli("events", "--json", state_dir=state_dir).out) if e["kind"] == "operator_send"
        ]
        assert [sorted(e["detail"]) for e in sends] == [["by", "bytes", "sha256"]] * 3 + [["by", "keys"]] * 2
        assert all("@" in e["detail"]["by"] and "hello" not in json.dumps(e) for e in sends)  # never the content
    finally:
        run_cli("send", job, "--text", "exit\n", state_dir=state_dir)
        proc.wait(timeout=60)


def test_send_refuses_a_bad_pattern_in_one_line(state_dir):
    res = run_cli("send", "r0-001", "--text", "x", "--wait-for", "(", state_dir=state_dir)
    assert res.code == 2 and "is not a regular expression" in res.err
