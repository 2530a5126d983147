"""Fixtures every test folder shares: an isolated environment, a private state dir (its tmux server
killed after), settings and a ledger on it. Plain helpers live in the `tests.helpers` package; the
AWS, audit and tmux fixtures are plugins registered here so each folder can ask for them."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers.cli import FAST_GRADE, FAST_RUN
from tests.helpers.tmux_cleanup import kill_processes_in, kill_servers_under

pytest_plugins = (
    "tests.helpers.aws_fixtures",
    "tests.helpers.audit_fixtures",
    "tests.helpers.tmux",
    "tests.helpers.ecs_double",
    "tests.helpers.ui",
)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No user settings leak in: FCEVAL_*/AWS_* removed, cwd without a .env, fake AWS credentials.
    Afterwards no tmux server on a socket in the test's tmp dir outlives it."""
    for key in list(os.environ):
        if key.startswith(("FCEVAL_", "AWS_", "EC2_", "SPOT_", "S3_", "FC_EVAL_")) or key == "TMUX":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    yield
    kill_servers_under(tmp_path)
    for jobs in (tmp_path / "state", tmp_path / "remote"):  # the local and the AWS fixtures' work dirs
        kill_processes_in(jobs)


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    yield path
    from fceval_tui.locations import tmux_socket_name

    subprocess.run(["tmux", "-L", tmux_socket_name(path), "kill-server"], capture_output=True)


@pytest.fixture
def fast_env(tmp_path):
    """Settings that make the example harness quick, and a trace file counting agent runs."""
    trace = tmp_path / "trace.jsonl"
    return {
        "FCEVAL_RUN_COMMAND": FAST_RUN,
        "FCEVAL_GRADE_COMMAND": FAST_GRADE,
        "FCEVAL_EXAMPLE_TRACE": str(trace),
        "FCEVAL_CONCURRENT": "4",
    }


@pytest.fixture
def settings_factory(state_dir):
    from fceval_tui.config import load_settings

    def make(**env):
        environ = {"FCEVAL_RUN_COMMAND": FAST_RUN, "FCEVAL_GRADE_COMMAND": FAST_GRADE}
        environ.update({k: str(v) for k, v in env.items()})
        return load_settings(environ=environ, state_dir=state_dir)

    return make


@pytest.fixture
def ledger(state_dir):
    from fceval_tui.ledger import Ledger

    s = Ledger.open(state_dir)
    yield s
    s.close()


def pytest_sessionstart(session):
    import shutil

    if shutil.which("tmux") is None:
        pytest.exit("the tests drive real tmux sessions: install tmux (e.g. `sudo apt-get install tmux`)", returncode=2)
