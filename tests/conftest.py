"""Shared fixtures: an isolated environment, a private state dir (its tmux server killed after),
and helpers to run the real CLI in-process or as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HARNESS = REPO / "examples" / "harness.py"
FAST_RUN = (
    f"{sys.executable} {HARNESS} agent --agent {{agent}} --task-id {{task_id}} --model {{model}}"
    " --out {artifacts_dir} --seconds 0.3"
)
FAST_GRADE = f"{sys.executable} {HARNESS} grade --task-id {{task_id}} --out {{artifacts_dir}}"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No user settings leak in: FCEVAL_*/AWS_* removed, cwd without a .env, fake AWS credentials."""
    for key in list(os.environ):
        if key.startswith(("FCEVAL_", "AWS_", "EC2_", "SPOT_", "S3_", "FC_EVAL_")) or key == "TMUX":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    yield path
    from fceval_tui.locations import tmux_socket_name

    subprocess.run(["tmux", "-L", tmux_socket_name(path), "kill-server"], capture_output=True)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str, state_dir: Path | None = None, env: dict | None = None, timeout: float = 120) -> CliResult:
    """The real CLI in a child process (what a user or script sees)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    argv = [sys.executable, "-m", "fceval_tui", *args]
    if state_dir is not None:
        argv[3:3] = ["--state-dir", str(state_dir)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


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
