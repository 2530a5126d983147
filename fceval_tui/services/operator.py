"""Who is operating the console, for the ledger's log of operator actions."""

from __future__ import annotations

import getpass
import socket


def identity() -> str:
    """`user@host` of this process (the AWS caller ARN is in the preflight audit's report)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
