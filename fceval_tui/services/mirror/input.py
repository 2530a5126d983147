"""Input into a pane: keys, text pasted through a tmux buffer, a command typed and waited for.

Each function takes the pane's id (`%N`, as `Mirror.start` resolves it) and blocks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from fceval_tui.errors import ConfigError
from fceval_tui.services.mirror.snapshot import PaneGone
from fceval_tui.services.mirror.tmux_io import TmuxCli

Uploader = Callable[[bytes], str]
"""Stores bytes somewhere the target can fetch them and returns a GET URL valid for <= 15 minutes."""

# $1 is the URL; the rest is the tmux load-buffer argv, completed with the downloaded file.
_FETCH_AND_LOAD = (
    "url=$1; shift; f=$(mktemp) || exit 1; "
    'if command -v curl >/dev/null 2>&1; then curl -fsSL -o "$f" "$url"; '
    "else python3 -c \"import sys,urllib.request; open(sys.argv[2],'wb').write("
    'urllib.request.urlopen(sys.argv[1], timeout=120).read())" "$url" "$f"; fi '
    '&& "$@" "$f"; rc=$?; rm -f "$f"; exit $rc'
)


def send_keys(tmux: TmuxCli, pane_id: str, *keys: str, literal: bool = False) -> None:
    """`tmux send-keys`: key names (Enter, C-c, ...) or, with literal=True, text typed as is."""
    tmux.run("send-keys", "-t", pane_id, *(["-l"] if literal else []), "--", *keys)


def run_and_wait(tmux: TmuxCli, pane_id: str, command: str, timeout: float) -> None:
    """Type `command` into the pane's shell and return once it has finished.

    The shell signals a unique `tmux wait-for` channel after the command. A waiter also returns
    when the server dies, so the pane is checked afterwards. Raises TimeoutError or PaneGone.
    """
    channel = f"fceval-{uuid.uuid4().hex}"
    tmux.run("send-keys", "-t", pane_id, "-l", "--", f"{command}; tmux wait-for -S {channel}")
    tmux.run("send-keys", "-t", pane_id, "Enter")
    tmux.run("wait-for", channel, timeout=timeout)
    if tmux.pane_info(pane_id).pane_id != pane_id:
        raise PaneGone(f"pane {pane_id} is gone")


def paste(tmux: TmuxCli, pane_id: str, text: str, uploader: Uploader | None) -> None:
    """Paste `text` into the pane through a tmux buffer (bracketed if the program asked for it).

    Small text goes through the transport's stdin; larger text than the transport can carry is
    staged with `uploader` (a presigned URL valid <= 15 minutes), which the target downloads.
    """
    transport = tmux.transport
    data = text.encode()
    buffer = f"fceval-{uuid.uuid4().hex[:12]}"
    limit = transport.max_stdin_bytes
    if limit is None or len(data) <= limit:
        tmux.run("load-buffer", "-b", buffer, "-", stdin=data)
    else:
        if uploader is None:
            raise ConfigError(
                f"cannot paste {len(data)} bytes into a pane on {transport.describe()} without staging",
                fix="configure an S3 artifacts prefix (FCEVAL_ARTIFACTS=s3://...) so large pastes can be staged",
            )
        url = uploader(data)  # secret: never logged
        transport.run(
            ["sh", "-c", _FETCH_AND_LOAD, "sh", url, *tmux.argv("load-buffer", "-b", buffer)],
            timeout=tmux.timeout,
        )
    tmux.run("paste-buffer", "-d", "-p", "-b", buffer, "-t", pane_id)
