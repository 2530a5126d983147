"""A command that ends when the process that started it dies, even by SIGKILL.

`start` runs `python -m fceval_tui.transports.lifeline FD -- COMMAND...` as the leader of a new
session and process group, COMMAND in that group, and keeps the write end of a pipe whose read end
(FD) only the guard holds. Nothing is ever written to it: when the starter exits, however it exits,
the kernel closes its end and the guard reads end-of-file, then ends its whole group (SIGTERM, then
SIGKILL after a grace period). So a port forward (the aws CLI and its session-manager-plugin, which
would otherwise outlive a killed console in their own session) never stays behind its console.

PR_SET_PDEATHSIG is not used: it fires when the *thread* that forked the child ends (forwards are
opened from worker threads), reaches only the direct child and not the plugin, and is Linux-only.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Sequence

GRACE_SECONDS = 5.0


def start(argv: Sequence[str], **popen) -> tuple[subprocess.Popen, int]:
    """Start `argv` under a guard in a new session; (the guard's Popen, the lifeline's write end).
    Keep the write end open as long as the command may run; closing it (or dying) ends the command."""
    read_end, write_end = os.pipe()  # both close-on-exec: no other child inherits the lifeline
    try:
        guard = subprocess.Popen(
            [sys.executable, "-m", __name__, str(read_end), "--", *argv],
            pass_fds=(read_end,),
            start_new_session=True,
            **popen,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return guard, write_end


def _end_group(child: subprocess.Popen) -> int:
    """End the command and whatever it started; the command is reaped here, so no zombie is left to init."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the guard outlives its own signal to finish the job
    os.killpg(0, signal.SIGTERM)
    try:
        child.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    os.killpg(0, signal.SIGKILL)  # what ignored SIGTERM, and this guard
    return 1


def main(args: list[str]) -> int:
    lifeline, command = int(args[0]), args[2:]
    ending: list[int] = []
    # SIGTERM to the group (PortForward.close) reaches the guard too: end the command and reap it first.
    signal.signal(signal.SIGTERM, lambda signum, _: ending.append(signum))
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        print(f"fceval-tui: cannot run {command[0]!r}: {exc.strerror}", flush=True)
        return 127
    while not ending:
        ready, _, _ = select.select([lifeline], [], [], 0.2)
        if ready and not os.read(lifeline, 1):
            break  # the starter is gone
        code = child.poll()
        if code is not None:
            return code
    return _end_group(child)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
