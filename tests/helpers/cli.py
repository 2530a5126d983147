"""Paths of the repository and the example harness, and the real CLI run as a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "examples" / "harness.py"
FAST_RUN = (
    f"{sys.executable} {HARNESS} agent --agent {{agent}} --task-id {{task_id}} --model {{model}}"
    " --out {artifacts_dir} --seconds 0.3"
)
FAST_GRADE = f"{sys.executable} {HARNESS} grade --task-id {{task_id}} --out {{artifacts_dir}}"


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
