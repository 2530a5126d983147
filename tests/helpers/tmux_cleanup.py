"""Leave no tmux server behind a test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def kill_servers_under(root: Path, env: dict[str, str] | None = None) -> None:
    """Kill the tmux server behind every socket below `root`: pipelines keep their session after the
    job ends (for attach), and a daemonized server would otherwise outlive the test."""
    env = env or {key: value for key, value in os.environ.items() if key != "TMUX"}
    for socket in root.rglob("*"):
        if socket.is_socket():
            subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True, env=env)
