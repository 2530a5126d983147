"""An EC2 run end to end through the CLI, on the moto server and the SSM doubles (ssm_double.py):
launch, a live tail and an attach through Session Manager (as ssm-user, while the pipeline runs as
root), delivery from the inbox to the results bucket, and a teardown that leaves nothing."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.aws import GRADE, PROFILE, REGION, RESULTS, RUN, STAGING, s3_keys
from tests.helpers.cli import run_cli

DEADLINE = 45.0  # a bound on waiting for the run, not a speed assertion
# The job shows a line, then waits until the test has attached and tailed before it does real work.
JOB = "echo job-line-before; while [ ! -f go ]; do sleep 0.1; done; echo job-line-live; " + RUN


def _cli_argv(state_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "fceval_tui", "--state-dir", str(state_dir), *args]


def _read_until(fd: int, needle: bytes, seen: bytes = b"", timeout: float = DEADLINE) -> bytes:
    deadline = time.monotonic() + timeout
    while needle not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not seen within {timeout}s: {seen[-1500:]!r}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                raise AssertionError(f"ended before {needle!r}: {seen[-1500:]!r}")
            seen += data
    return seen


def _attach(state_dir: Path, env: dict[str, str], job_id: str) -> bytes:
    """`fceval-tui attach JOB` on a terminal: wait for the job's screen, detach with C-b d."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(sys.executable, _cli_argv(state_dir, "attach", job_id), {**env, "TERM": "xterm-256color"})
    try:
        seen = _read_until(fd, b"job-line-before")
        deadline = time.monotonic() + DEADLINE
        while b"[detached" not in seen and time.monotonic() < deadline:
            os.write(fd, b"\x02d")  # a key typed while the client starts may be lost, as on a terminal
            try:
                seen = _read_until(fd, b"[detached", seen, timeout=1.0)
            except AssertionError:
                continue
        return seen
    finally:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


def _instances(world, run_id: str) -> list[dict]:
    reservations = world.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:fceval:run-id", "Values": [run_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def test_ec2_run_through_the_cli(aws_env, ec2_machine, ssm_sessions, tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    env = {
        **os.environ,
        "AWS_REGION": REGION,
        "FC_EVAL_S3_BUCKET": STAGING,
        "FCEVAL_ARTIFACTS": f"s3://{RESULTS}/evals",
        "FCEVAL_INSTANCE_PROFILE": PROFILE,
        "FCEVAL_REMOTE_WORK_DIR": ec2_machine.work_root,
        "FCEVAL_RUN_COMMAND": JOB,
        "FCEVAL_GRADE_COMMAND": GRADE,
        "EC2_USE_NVME_STORAGE": "false",
    }
    launch = subprocess.Popen(
        _cli_argv(
            state_dir,
            "launch",
            "--backend",
            "ec2",
            "--task-id",
            "hello",
            "--agent",
            "aide",
            "--skip-preflight",
            "--json",
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = launch.stdout.readline()
        assert first, launch.stderr.read()
        run_id = json.loads(first)["run_id"]
        job_id = f"{run_id}-001"
        work = Path(ec2_machine.work_root) / job_id
        deadline = time.monotonic() + DEADLINE
        while not (work / "console.log").exists() or b"job-line-before" not in (work / "console.log").read_bytes():
            assert launch.poll() is None, launch.stderr.read()
            assert time.monotonic() < deadline, "the pipeline did not start"
            time.sleep(0.1)

        # attach: the session argv, run on a terminal, reaches the root-owned server as ssm-user.
        screen = _attach(state_dir, env, job_id)
        assert b"job-line-before" in screen and b"[detached" in screen, screen[-1500:]

        # tail: the live lines, streamed through a session (a control client as ssm-user).
        tail = subprocess.Popen(
            _cli_argv(state_dir, "tail", job_id, "--from-start"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            seen = _read_until(tail.stdout.fileno(), b"job-line-before\n")
            (work / "go").touch()
            _read_until(tail.stdout.fileno(), b"job-line-live\n", seen)
        finally:
            tail.terminate()
            tail.wait(timeout=10)
        sessions = [argv for argv in ssm_sessions.calls() if "start-session" in argv]
        assert any("attach-session" in argv[-1] for argv in sessions), sessions
        assert any("-C" in argv[-1] for argv in sessions), sessions
        for argv in sessions:  # the job's socket, never a default one
            assert f"-S {work}/tmux.sock" in json.loads(argv[argv.index("--parameters") + 1])["command"][0]

        out, err = launch.communicate(timeout=DEADLINE)
        assert launch.returncode == 0, err
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait()

    status = run_cli("status", run_id, "--json", state_dir=state_dir, env=env)
    (job,) = json.loads(status.out)
    assert job["state"] == "succeeded", job
    assert job["artifacts"][0] == f"s3://{RESULTS}/evals/runs/aide/hello/{run_id}.tar.gz"
    assert s3_keys(aws_env, RESULTS, f"evals/runs/aide/hello/{run_id}") == [f"evals/runs/aide/hello/{run_id}.tar.gz"]
    assert len(s3_keys(aws_env, RESULTS, "evals/grades/aide/hello/")) >= 1

    teardown = run_cli("teardown", "--run", run_id, "--yes", state_dir=state_dir, env=env)
    assert teardown.code == 0, teardown.out + teardown.err
    assert _instances(aws_env, run_id) == []
    assert s3_keys(aws_env, STAGING, f"fceval-tui/staging/{run_id}/") == []
    assert s3_keys(aws_env, STAGING, f"fceval-tui/inbox/{run_id}/") == []
