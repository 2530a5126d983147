"""`lifeline`: a command started under a guard ends with the process that started it, even when that
process is killed with SIGKILL (it never gets to clean up), and it ends with everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEADLINE = 20.0  # a bound on waiting, not a speed assertion

# The "console": starts `sh -c 'sleep & sleep'` under a guard (a child and a grandchild, like the aws CLI and its
# plugin), prints the group id, and waits to be killed.
STARTER = """
import sys, time
from fceval_tui.transports import lifeline
guard, _ = lifeline.start(["sh", "-c", "sleep 1000 & sleep 1000"])
print(guard.pid, flush=True)
time.sleep(1000)
"""


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _members(group: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[2]) == group and fields[0] != "Z":
                found.append(int(entry))
    return found


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_guarded_group_ends_when_its_starter_is_killed(how):
    starter = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        group = int(starter.stdout.readline())
        deadline = time.monotonic() + DEADLINE
        while len(_members(group)) < 3 and time.monotonic() < deadline:  # guard, sh, two sleeps
            time.sleep(0.02)
        assert len(_members(group)) >= 3, _members(group)
        starter.send_signal(how)
        starter.wait(DEADLINE)
        deadline = time.monotonic() + DEADLINE
        while _members(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _members(group) == [], "the guarded command outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
        if _group_alive(group):
            os.killpg(group, signal.SIGKILL)


def test_the_guard_ends_with_its_command_and_keeps_its_exit_code():
    from fceval_tui.transports import lifeline

    guard, line = lifeline.start(["sh", "-c", "echo out; exit 7"], stdout=subprocess.PIPE, text=True)
    try:
        assert guard.wait(DEADLINE) == 7 and guard.stdout.read() == "out\n"
    finally:
        os.close(line)
    guard, line = lifeline.start(["/nonexistent/aws"], stdout=subprocess.PIPE, text=True)
    try:
        assert guard.wait(DEADLINE) == 127 and "cannot run '/nonexistent/aws'" in guard.stdout.read()
    finally:
        os.close(line)
