"""Input into a pane: keys, text pasted through a tmux buffer, a command typed and waited for.

Each function takes the pane's id (`%N`, as `Mirror.start` resolves it) and blocks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from fceval_tui.errors import ConfigError, TransientError
from fceval_tui.services.mirror.snapshot import PaneGone
from fceval_tui.services.mirror.tmux_io import TmuxCli
from fceval_tui.transports.base import CommandResult, Transport


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


Progress = Callable[[int, int], None]  # (bytes delivered to the target so far, bytes in all)


def paste(tmux: TmuxCli, pane_id: str, text: str, progress: Progress | None = None) -> None:
    """Paste `text` into the pane through a tmux buffer (bracketed if the program asked for it).

    Text within one command's input goes at once; larger text is appended chunk by chunk to a private
    temporary file on the target (mktemp, 0600) and loaded from there. The input is the command's
    stdin, or where the transport has none (ECS Exec) typed into its session (`Transport.run_typed`).
    The text never appears in an argv, and no URL or credential is involved. `progress` is told after
    each chunk.
    """
    data = text.encode()
    report = progress or (lambda done, total: None)
    buffer = f"fceval-{uuid.uuid4().hex[:12]}"
    transport = tmux.transport
    limit, send = transport.max_stdin_bytes, _stdin_sender(tmux)
    if limit == 0 and transport.max_typed_input_bytes > 0:
        limit, send = transport.max_typed_input_bytes, _typed_sender(tmux)
    if limit is None or len(data) <= transport.max_stdin_bytes:
        tmux.run("load-buffer", "-b", buffer, "-", stdin=data)
    elif len(data) <= limit:
        _check(send(tmux.argv("load-buffer", "-b", buffer, "-"), data), transport)
    else:
        _load_in_chunks(tmux, buffer, data, limit, send, report)
    tmux.run("paste-buffer", "-d", "-p", "-b", buffer, "-t", pane_id)
    report(len(data), len(data))


Sender = Callable[[list[str], bytes], CommandResult]  # runs argv on the target with the bytes as its stdin


def _stdin_sender(tmux: TmuxCli) -> Sender:
    return lambda argv, data: tmux.transport.run(argv, stdin=data, timeout=tmux.timeout)


def _typed_sender(tmux: TmuxCli) -> Sender:
    return lambda argv, data: tmux.transport.run_typed(argv, data, timeout=tmux.timeout)


def _check(result: CommandResult, transport: Transport) -> None:
    if not result.ok:
        why = (result.stderr.strip() or result.stdout.strip())[-300:] or f"exit {result.exit_code}"
        raise TransientError(f"pasting into {transport.describe()} failed: {why}")


def _load_in_chunks(tmux: TmuxCli, buffer: str, data: bytes, limit: int, send: Sender, report: Progress) -> None:
    transport = tmux.transport
    if limit <= 0:
        raise ConfigError(
            f"cannot paste into a pane on {transport.describe()}: it carries no input to commands",
            fix="type the text with `fceval-tui send JOB --keys` or take control in the console",
        )
    made = transport.run(["mktemp"], timeout=tmux.timeout)
    path = made.stdout.strip()
    if not made.ok or not path:
        raise TransientError(f"cannot create a temporary file on {transport.describe()}: {made.stderr.strip()}")
    try:
        for start in range(0, len(data), limit):
            _check(send(["sh", "-c", 'cat >> "$1"', "sh", path], data[start : start + limit]), transport)
            if start + limit < len(data):  # the whole of it is reported once pasted
                report(start + limit, len(data))
        tmux.run("load-buffer", "-b", buffer, path)
    finally:
        transport.run(["rm", "-f", path], timeout=tmux.timeout)
