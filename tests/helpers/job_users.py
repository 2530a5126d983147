"""Leave no pool job user behind a test.

The warm pool's jobs each run as a Unix user of their own, created on the "instance" (this machine, in
the SSM doubles) and removed by the job's cleanup. A test that fails mid-job leaves its users and their
processes: remove them, but only the ones whose home is on that test's machine (another test, or another
checkout's run, may be using its own users at the same time).
"""

from __future__ import annotations

import grp
import pwd
import subprocess
import time
from pathlib import Path

KILL_WAIT = 10.0  # a bound on waiting for killed processes to go, not a speed assertion


def users_homed_under(root: Path) -> list[pwd.struct_passwd]:
    root = root.resolve()
    return [u for u in pwd.getpwall() if u.pw_dir and Path(u.pw_dir).is_relative_to(root)]


def _live(uid: int) -> bool:
    """Whether a process of `uid` (real or effective) lives; zombies hold nothing and init reaps them."""
    ps = subprocess.run(["ps", "-e", "-o", "ruid=,euid=,stat="], capture_output=True, text=True)
    return any(
        str(uid) in (ruid, euid) and not stat.startswith("Z")
        for ruid, euid, stat in (line.split() for line in ps.stdout.splitlines())
    )


def remove_users_homed_under(root: Path) -> list[str]:
    """Kill every process of each user whose home is under `root`, then remove the user and its group.
    Returns the names removed."""
    removed = []
    for user in users_homed_under(root):
        deadline = time.monotonic() + KILL_WAIT
        while True:
            for flag in ("-U", "-u"):  # real and effective uid
                subprocess.run(["pkill", "-KILL", flag, str(user.pw_uid)], capture_output=True)
            if not _live(user.pw_uid) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        subprocess.run(["userdel", user.pw_name], capture_output=True)
        if any(group.gr_name == user.pw_name for group in grp.getgrall()):
            subprocess.run(["groupdel", user.pw_name], capture_output=True)
        removed.append(user.pw_name)
    return removed
