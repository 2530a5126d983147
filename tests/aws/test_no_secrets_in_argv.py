"""While cloud jobs start and run, no process's argv on this machine, no SSM command parameter and no
ECS Exec command string carries a credential or a presigned query string (they are visible in `ps`,
in SSM's command history and in CloudTrail)."""

from __future__ import annotations

import base64
import binascii
import os
import threading
from pathlib import Path

import pytest

from fceval_tui.backends import aws as aws_backend
from fceval_tui.backends.batch import BatchBackend
from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.backends.ecs import EcsBackend
from fceval_tui.domain.states import JobState
from tests.helpers.aws import QUICK, RUN, run_with_runner, spec
from tests.helpers.ecs_double import MARKER

SECRET = "fcevalCanarySecretKey0123456789abcdefXYZ"
TOKEN = "fcevalCanarySessionToken" + "Q" * 40
WATCH_MARKER = "FCEVAL_TEST_ARGV_WATCH"
PRESIGNED = ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "AWSAccessKeyId=", "Signature=")


class ArgvWatcher:
    """Reads the argv of every process this test started, over and over, while jobs start and run.

    Other processes on the machine (a CI harness's own commands) are not this test's to judge: a
    process is ours if pytest is among its ancestors, or it carries the canary's or an ECS double
    container's marker in its environment (tmux servers daemonize, so they lose their ancestry)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ArgvWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            parents = {}
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    parents[pid] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
                except (OSError, IndexError):
                    continue  # the process ended meanwhile
            for pid in parents:
                try:
                    if _ours(pid, parents):
                        self.seen.add(
                            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                        )
                except OSError:
                    continue
            self._stop.wait(0.01)


def _ours(pid: str, parents: dict[str, str]) -> bool:
    me, hops, ancestor = str(os.getpid()), 0, pid
    while ancestor in parents and hops < 64:
        if ancestor == me:
            return True
        ancestor, hops = parents[ancestor], hops + 1
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    return f"{WATCH_MARKER}=".encode() in environ or f"{MARKER}=".encode() in environ


def _decoded(word: str) -> str:
    try:
        return base64.b64decode(word + "=" * (-len(word) % 4)).decode("latin-1")
    except (ValueError, binascii.Error):
        return ""  # not base64


def leaks(texts) -> list[str]:
    return [t[:200] for t in texts if SECRET in t or TOKEN in t or any(mark in t for mark in PRESIGNED)]


@pytest.fixture
def canary_credentials(aws_env, monkeypatch):
    """Credentials only this test uses, in this process and every child (fresh Sessions pick them up)."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv(WATCH_MARKER, "1")
    monkeypatch.setattr(aws_backend, "_sessions", {})
    return aws_env


def test_ec2_jobs_put_no_secret_in_any_argv_or_ssm_parameter(aws_settings, canary_credentials, ssm_agent):
    settings = aws_settings(FCEVAL_BACKEND="ec2")
    backend = Ec2Backend(settings)
    assert backend.aws.session.get_credentials().secret_key == SECRET
    with ArgvWatcher() as watcher:
        _, final = run_with_runner(settings, backend, [spec("hello")])
    assert final["hello"].state == JobState.SUCCEEDED, final["hello"].error
    sent = list(ssm_agent.commands)
    # Parameters carry the pipeline bundle base64-encoded: decode what can be decoded, and look there too.
    decoded = [_decoded(word) for c in sent for word in c.split() if len(word) > 40]
    assert sent and any(argv.startswith("tmux ") for argv in watcher.seen)  # the daemonized server is watched
    assert leaks(watcher.seen) == [] and leaks(sent) == [] and leaks(decoded) == []


def test_ecs_jobs_put_no_secret_in_any_argv_or_exec_command(aws_settings, canary_credentials, ecs_exec):
    settings = aws_settings(FCEVAL_BACKEND="ecs", FCEVAL_RUN_COMMAND=f"{RUN} --seconds {QUICK}")
    backend = EcsBackend(settings)
    backend.poll_interval = 0.05
    with ArgvWatcher() as watcher:
        _, final = run_with_runner(settings, backend, [spec("hello")])
    assert final["hello"].state == JobState.SUCCEEDED, final["hello"].error
    assert any(argv.startswith("tmux ") for argv in watcher.seen)  # the container's, daemonized
    assert leaks(watcher.seen) == [] and leaks(" ".join(call) for call in ecs_exec.exec_calls()) == []


def test_batch_jobs_put_no_secret_in_any_argv(aws_settings, canary_credentials, batch_compute):
    settings = aws_settings(FCEVAL_BACKEND="batch")
    backend = BatchBackend(settings)
    backend.poll_interval = 0.05
    with ArgvWatcher() as watcher:
        _, final = run_with_runner(settings, backend, [spec("hello")])
    assert final["hello"].state == JobState.SUCCEEDED, final["hello"].error
    assert leaks(watcher.seen) == []
