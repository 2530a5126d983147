"""Run a child on a pseudo-terminal of its own, in a process group of its own, and read it to the end.

For `aws ecs execute-command`: session-manager-plugin reads keystrokes from its stdin and sets that
terminal's modes (`stty cbreak -echo`, then `stty echo` when the session ends). Inheriting the
console's stdin, it gives up at end of file ("Cannot perform start session: EOF", exit 0, no output)
under nohup, CI or `</dev/null`, and on a terminal it reads the operator's keys and leaves echo on.
Here the plugin gets a terminal nobody types into and that is not ours, and a timeout kills the whole
group (the CLI, the plugin it started and any command prefix) before the leader is reaped, so no
orphan keeps reading anything.

`Feed` types bytes into that terminal once the child has printed a given line (so, for a remote
session, only when the far side is ready to read them), while the output goes on being read.
"""

from __future__ import annotations

import errno
import os
import pty
import select
import signal
import subprocess
import time
import tty
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_DRAIN = 0.2  # seconds to keep reading after the leader exited while others still hold the terminal
_GONE = 2.0  # seconds to let killed members of the group die (SIGKILL takes effect asynchronously)


@dataclass(frozen=True)
class Feed:
    """Bytes to type into the child's terminal once `after` has appeared in its output."""

    after: bytes
    data: bytes


@dataclass(frozen=True)
class PtyRun:
    returncode: int
    output: bytes  # stdout and stderr as they came through the terminal


def run_on_pty(
    argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None, feed: Feed | None = None
) -> PtyRun:
    """Run `argv` with a new pty (raw mode) as stdin, stdout and stderr, in a new session; raises
    FileNotFoundError when argv[0] does not exist and TimeoutError (after killing the group) when the
    child has not finished within `timeout` seconds."""
    primary, secondary = pty.openpty()
    try:
        tty.setraw(secondary)
        proc = subprocess.Popen(
            list(argv), stdin=secondary, stdout=secondary, stderr=secondary, env=env, start_new_session=True
        )
    except BaseException:
        os.close(primary)
        raise
    finally:
        os.close(secondary)
    try:
        output = _read_to_exit(primary, proc.pid, time.monotonic() + timeout, feed)
    finally:
        # The leader is not reaped yet, so its pid (the group id) cannot have been reused.
        _kill_group(proc.pid)
        proc.wait()
        os.close(primary)
        _wait_group_gone(proc.pid)
    if output is None:
        raise TimeoutError(f"{argv[0]} did not finish within {timeout}s")
    assert proc.returncode is not None
    return PtyRun(proc.returncode, output)


def _read_to_exit(fd: int, pid: int, deadline: float, feed: Feed | None = None) -> bytes | None:
    """Everything the child writes until every holder of the terminal closed it, or until the leader
    exited and nothing more came for a moment; None when `deadline` passes first. `feed` is written
    as the terminal takes it (never blocking, so the child's output is read meanwhile)."""
    chunks: list[bytes] = []
    pending = b""  # of feed.data, what the terminal has not taken yet
    armed = feed is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if armed and feed.after in b"".join(chunks):
            pending, armed = feed.data, False
        exited = _exited(pid)
        ready, writable, _ = select.select([fd], [fd] if pending else [], [], min(left, _DRAIN))
        if writable:
            pending = pending[_write_some(fd, pending) :]
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError as exc:  # EIO: the last holder of the secondary side closed it
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                return b"".join(chunks)
            chunks.append(data)
        elif exited:
            return b"".join(chunks)


def _write_some(fd: int, data: bytes) -> int:
    """Write what the terminal takes now (it holds a few KB until the child reads them)."""
    os.set_blocking(fd, False)
    try:
        return os.write(fd, data[:4096])
    except BlockingIOError:
        return 0
    finally:
        os.set_blocking(fd, True)


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # every member has exited


def _wait_group_gone(pgid: int) -> None:
    """Until every member of the group has died: gone, or a zombie waiting for init to reap it (bounded)."""
    deadline = time.monotonic() + _GONE
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if _only_zombies(pgid):
            return
        time.sleep(0.01)


def _only_zombies(pgid: int) -> bool:
    """Whether the group's remaining members have all died (from Linux's /proc; False where unknown)."""
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
                text = stat.read()
        except OSError:
            continue  # exited meanwhile
        state, _ppid, pgrp = text[text.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            return False
    return True
