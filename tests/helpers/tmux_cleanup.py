"""Leave no tmux server, and no process of a job, behind a test."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def kill_servers_under(root: Path, env: dict[str, str] | None = None) -> None:
    """Kill the tmux server behind every socket below `root`: pipelines keep their session after the
    job ends (for attach), and a daemonized server would otherwise outlive the test."""
    env = env or {key: value for key, value in os.environ.items() if key != "TMUX"}
    for socket in root.rglob("*"):
        if socket.is_socket():
            subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True, env=env)


def kill_processes_in(root: Path) -> None:
    """SIGKILL every process whose working directory is `root` or below (deleted or not): a pipeline
    traps HUP and TERM, so a job waiting for a file the test never wrote would loop on, orphaned, long
    after its tmux server is gone. Only for job directories: a module's tmux server may work in a test's
    tmp dir."""
    prefix = os.path.realpath(root)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd").removesuffix(" (deleted)")
        except OSError:
            continue  # ended meanwhile, or not ours to read
        if cwd == prefix or cwd.startswith(prefix + os.sep):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                continue
