"""Plain helpers for the warm pool tests on the moto server and the SSM doubles (the `pool_env` fixture is
in tests/aws/conftest.py): a Python the jobs' Unix users can run, the example harness as their command,
the pool's instances as EC2 lists them, and a bounded wait."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from fceval_tui.backends.aws_constants import POOL_TAG
from tests.helpers.cli import HARNESS


def _python_for_job_users() -> str | None:
    """A Python an unprivileged user can run (the harness runs as the job's user; a virtualenv under
    /root is out of its reach)."""
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if (
            candidate
            and subprocess.run(
                ["runuser", "-u", "nobody", "--", candidate, "-c", "pass"], capture_output=True
            ).returncode
            == 0
        ):
            return candidate
    return None


PYTHON = _python_for_job_users()


def harness(step: str) -> str:
    if step == "agent":
        return f"{PYTHON} {HARNESS} agent --agent {{agent}} --task-id {{task_id}} --out {{artifacts_dir}}"
    return f"{PYTHON} {HARNESS} grade --task-id {{task_id}} --out {{artifacts_dir}}"


def pool_instances(world, name: str, states=("pending", "running")) -> list[dict]:
    reservations = world.client("ec2").describe_instances(
        Filters=[{"Name": f"tag:{POOL_TAG}", "Values": [name]}, {"Name": "instance-state-name", "Values": list(states)}]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def wait_for(predicate, what: str, timeout: float = 60.0):
    """A bound on waiting for the doubles, not a speed assertion."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.05)
    return value
