"""The local tmux transport, with sessions as another OS user: a double of Session Manager's split.

Commands (Run Command) and sessions run as different users (root and ssm-user; DESIGN.md, "AWS
behaviour a test double must model"), each with their own default tmux socket directory, so a
session does not see a server a command sees unless both name one explicit socket path. Here the
sessions' TMUX_TMPDIR is another directory (short: a socket path holds at most 107 bytes).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fceval_tui.transports.local import LocalTransport, ProcessStream
from tests.helpers.tmux import clean_env
from tests.helpers.tmux_cleanup import kill_servers_under


class SessionAsAnotherUser(LocalTransport):
    """Commands see the test's tmux server; sessions (streams) look in `session_tmpdir`."""

    def __init__(self, session_tmpdir: Path) -> None:
        super().__init__(env=clean_env())
        self.session_env = {**clean_env(), "TMUX_TMPDIR": str(session_tmpdir)}
        self.sessions = 0

    def open_stream(self, argv):
        self.sessions += 1
        return ProcessStream(argv, env=self.session_env)

    @property
    def is_local(self) -> bool:
        return False  # like a remote transport: `attach` goes through a session

    def describe(self) -> str:
        return "sessions as another user"


@contextmanager
def session_user_tmpdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fsu-", dir="/tmp"))
    try:
        yield path
    finally:
        kill_servers_under(path)
        shutil.rmtree(path, ignore_errors=True)
