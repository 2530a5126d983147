"""The EC2 double's machine leaves no pool job user behind a test that failed mid-job (tests/helpers/job_users.py),
and touches no job user of another machine (another test, or another checkout's run, at the same time)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from fceval_tui.backends import pool_scripts
from tests.helpers.machine_state import user_exists
from tests.helpers.ssm_double import Ec2Machine

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creating job users needs root (as CI runs the tests)")


def _machine() -> Ec2Machine:
    root = Path(tempfile.mkdtemp(prefix="fceval-ec2-", dir="/tmp"))
    (root / "fceval").mkdir()
    return Ec2Machine(root, {k: v for k, v in os.environ.items() if k != "TMUX"})


def _user_on(machine: Ec2Machine, job_id: str) -> tuple[str, subprocess.Popen]:
    """A job's user as the pool creates it, and a process of it still running (what a failed test leaves)."""
    user = pool_scripts.job_user(job_id)
    work = f"{machine.work_root}/{job_id}"
    made = machine.run_as_root(pool_scripts.job_setup(work, user))
    assert made.returncode == 0, made.stderr
    return user, subprocess.Popen(["runuser", "-u", user, "--", "sleep", "300"], start_new_session=True)


def test_stop_removes_the_job_users_of_its_machine_only():
    suffix = os.urandom(3).hex()
    mine, other = _machine(), _machine()
    try:
        user, process = _user_on(mine, f"rclean{suffix}-001")
        stranger, stranger_process = _user_on(other, f"rclean{suffix}-002")
        mine.stop()
        assert not user_exists(user)
        assert process.wait(timeout=30) != 0  # killed, not finished
        groups = subprocess.run(["getent", "group", user], capture_output=True, text=True)
        assert groups.returncode != 0, groups.stdout
        assert not mine.root.exists()
        assert user_exists(stranger) and stranger_process.poll() is None  # another machine's user is left alone
    finally:
        other.stop()
    assert not user_exists(stranger)
    assert stranger_process.wait(timeout=30) != 0
