"""EC2 on SSM doubles that behave as AWS does (tests/helpers/ssm_double.py): the pipeline is started by
Run Command as root, while tail, the live mirror and attach go through Session Manager sessions, which
run as the unprivileged ssm-user in a pty. Both must reach the job's one tmux server."""

from __future__ import annotations

import base64
import dataclasses
import grp
import io
import os
import pty
import re
import select
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.backends.remote_tmux import TMUX_GROUP
from fceval_tui.domain import pipeline
from fceval_tui.services.mirror import Mirror
from fceval_tui.services.mirror.tail import attach_argv, attach_env
from fceval_tui.transports.retry import RetryPolicy
from tests.helpers.aws import STAGING, make_context, new_run_id, record_calls, s3_keys
from tests.helpers.ssm_double import SSM_USER

# The job prints a line, then waits for the test to let it go on (so later lines are live).
WAITING_JOB = "echo job-line-before; while [ ! -f go ]; do sleep 0.05; done; echo job-line-live; sleep 60"
DEADLINE = 20.0  # a bound on waiting for the doubles, not a speed assertion


@pytest.fixture
def started_job(aws_settings, ec2_machine, ssm_sessions):
    settings = aws_settings(
        FCEVAL_REMOTE_WORK_DIR=ec2_machine.work_root, FCEVAL_RUN_COMMAND=WAITING_JOB, FCEVAL_GRADE_COMMAND=""
    )
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    ctx = make_context(settings, new_run_id())
    instance_id = backend.provision(ctx)
    calls = record_calls([backend.aws.ssm, backend.aws.s3])
    try:
        backend.start(ctx, instance_id)
        job = dataclasses.replace(ctx.job, resource_id=instance_id)
        yield backend, ctx, job, calls
    finally:
        backend.cleanup(ctx, instance_id)


def _work(backend, job) -> Path:
    return Path(backend.settings.remote_work_dir) / job.id


def _wait_for(predicate, what: str):
    deadline = time.monotonic() + DEADLINE
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {DEADLINE}s")
        time.sleep(0.05)
    return value


def test_the_pipeline_runs_as_root_and_sessions_as_ssm_user(started_job, ssm_sessions):
    backend, _ctx, job, _calls = started_job
    target = backend.tmux_target(job)
    assert target.transport.run(["id", "-un"]).stdout.strip() == "root"
    # A one-off session (what `fceval-tui attach` runs) reports the session user and a terminal with echo.
    out = subprocess.run(
        target.transport.interactive_argv(["sh", "-c", "id -un; stty -a"]),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    ).stdout.replace("\r", "")
    assert f"\n{SSM_USER}\n" in out, out
    assert re.search(r"(?<![-\w])echo\b", out), out


def test_tail_streams_the_live_pane_through_a_session_as_ssm_user(started_job, ssm_sessions):
    backend, _ctx, job, _calls = started_job
    target = backend.tmux_target(job)
    assert target.transport.can_stream()
    mirror = Mirror(
        target.transport,
        target.tmux_args,
        target.session,
        from_start=True,
        want_screen=False,
        retry_policy=RetryPolicy(attempts=2, base=0.1),
    )
    lines: list[str] = []
    with mirror:
        assert mirror.mode == "stream"
        deadline = time.monotonic() + DEADLINE
        while "job-line-before" not in lines and time.monotonic() < deadline:
            lines += mirror.poll(0.2).lines
        (_work(backend, job) / "go").touch()
        while "job-line-live" not in lines and time.monotonic() < deadline:
            lines += mirror.poll(0.2).lines
    assert "job-line-before" in lines and "job-line-live" in lines, lines
    sessions = [argv for argv in ssm_sessions.calls() if "start-session" in argv]
    assert sessions and "-C" in sessions[0][-1]  # the control client ran through Session Manager


def _attach_under_pty(argv: list[str], until: bytes) -> bytes:
    """Run `argv` on a pty like a terminal would; once `until` is on the screen, detach (C-b d)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(argv[0], argv, {**attach_env(), "TERM": "xterm-256color"})
    seen = b""
    detached_at = 0.0
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                seen += data
            # A key typed while the client is still starting may be lost (as on a terminal): retry.
            if until in seen and time.monotonic() - detached_at > 1.0:
                os.write(fd, b"\x02d")
                detached_at = time.monotonic()
    finally:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    return seen


def test_attach_opens_the_jobs_tmux_session_as_ssm_user(started_job, ssm_sessions):
    backend, _ctx, job, _calls = started_job
    target = backend.tmux_target(job)
    argv = attach_argv(target.tmux_args, target.session, target.transport)
    assert "start-session" in argv
    screen = _attach_under_pty(argv, b"job-line-before")
    assert b"job-line-before" in screen, screen[-2000:]
    assert b"[detached" in screen, screen[-600:]
    assert b"no server running" not in screen


def test_status_grants_ssm_user_when_it_appears_after_the_launch(started_job, ec2_machine, ssm_sessions):
    """The agent creates ssm-user at the first session, possibly after the launch: each status poll
    (Run Command, root) grants it access once it exists."""
    backend, ctx, job, _calls = started_job
    target = backend.tmux_target(job)
    socket = str(_work(backend, job) / "tmux.sock")
    # As if ssm-user did not exist at launch: neither in the group nor in the server's access list.
    assert ec2_machine.run_as_root(f"gpasswd -d {SSM_USER} {TMUX_GROUP}").returncode == 0
    assert ec2_machine.run_as_root(f"tmux -S {socket} server-access -d {SSM_USER}").returncode == 0
    refused = subprocess.run(
        target.transport.interactive_argv(["tmux", *target.tmux_args, "list-sessions"]),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    ).stdout
    assert "Permission denied" in refused or "access not allowed" in refused, refused
    backend.observe(ctx, job.resource_id)
    allowed = subprocess.run(
        target.transport.interactive_argv(["tmux", *target.tmux_args, "list-sessions", "-F", "#{session_name}"]),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    ).stdout
    assert job.id in allowed, allowed


def test_socket_and_work_dir_are_open_to_the_group_only(started_job):
    backend, _ctx, job, _calls = started_job
    work = _work(backend, job)
    socket = work / "tmux.sock"
    assert socket.is_socket()
    for path, mode in ((work, 0o710), (socket, 0o660)):
        info = path.stat()
        assert info.st_mode & 0o007 == 0, f"{path} is open to others: {oct(info.st_mode)}"
        assert info.st_mode & mode == mode, f"{path}: {oct(info.st_mode)}"
    assert grp.getgrgid(work.stat().st_gid).gr_name == TMUX_GROUP
    assert grp.getgrgid(socket.stat().st_gid).gr_name == TMUX_GROUP
    for name in (pipeline.SCRIPT_NAME, pipeline.ENV_FILE):
        assert (work / name).stat().st_mode & 0o077 == 0, name  # root's alone


def test_pipeline_and_values_arrive_in_the_command_not_from_s3(started_job, ec2_machine, aws_env):
    backend, ctx, job, calls = started_job
    work = _work(backend, job)
    env_text = (work / pipeline.ENV_FILE).read_text()
    assert f"FCEVAL_JOB_TASK_ID={job.task_id}" in env_text and "FCEVAL_JOB_UPLOAD_PREFIX=s3://" in env_text
    assert (work / pipeline.SCRIPT_NAME).read_text().startswith("#!/bin/sh")
    # Nothing for the instance to fetch: neither staged nor copied from S3 on the instance.
    staged = s3_keys(aws_env, STAGING, backend.staging(ctx.job, ctx.attempt).prefix + "/")
    assert not [key for key in staged if key.endswith((pipeline.SCRIPT_NAME, pipeline.ENV_FILE))], staged
    assert not [c for c in ec2_machine.commands if "s3 cp" in c and "staging" in c]
    # What went through SSM: the launch's bundle holds the script and the job's values, nothing else.
    sent = [p["Parameters"]["commands"][0] for p in calls.named("SendCommand")]
    bundles = [base64.b64decode(m) for c in sent for m in re.findall(r"printf %s ([A-Za-z0-9+/=]+) \|", c)]
    assert len(bundles) == 1
    with tarfile.open(fileobj=io.BytesIO(bundles[0])) as tar:
        files = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert sorted(files) == [pipeline.ENV_FILE, pipeline.SCRIPT_NAME]
    assert files[pipeline.ENV_FILE] == env_text
    names = {line.split("=", 1)[0] for line in env_text.splitlines()}
    assert names == set(ctx.env) | {"FCEVAL_JOB_UPLOAD_PREFIX"}
    # No credentials or presigned query strings anywhere in what was sent.
    for text in [*sent, *files.values()]:
        for needle in ("X-Amz-", "Signature=", "AWSAccessKeyId", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            assert needle not in text, needle


def test_instance_role_may_only_put_objects_besides_the_agent():
    s3_actions = {a for a in Ec2Backend.instance_actions if a.startswith("s3:")}
    assert "s3:GetObject" not in s3_actions and "s3:PutObject" in s3_actions
    assert s3_actions <= {"s3:PutObject", "s3:GetEncryptionConfiguration"}
