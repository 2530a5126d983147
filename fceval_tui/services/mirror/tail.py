"""`fceval-tui tail` and `fceval-tui attach`: print a pane's new lines; argv for an interactive attach."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from fceval_tui.services.mirror.facade import Mirror
from fceval_tui.transports.base import Transport


def tail(
    transport: Transport | None,
    tmux_args: tuple[str, ...],
    target: str,
    from_start: bool,
    out: TextIO,
    *,
    err: TextIO | None = None,
) -> int:
    """Print each new completed line of the pane once, in order, as it appears.

    Returns 0 when the pane's process exits or its session ends. Raises NotFoundError (a
    UserError) when the target does not exist. Gaps (possible only when polling or after a
    reconnect) are reported on `err` (stderr by default), never mixed into `out`.
    """
    err = err if err is not None else sys.stderr
    mirror = Mirror(transport, tmux_args, target, from_start=from_start, want_screen=False)
    with mirror:
        for update in mirror:
            notice = update.gap_text()
            if notice:
                print(f"fceval-tui tail: {notice}", file=err, flush=True)
            if update.reconnecting:
                print("fceval-tui tail: connection lost; reconnecting", file=err, flush=True)
            if update.lines:
                out.write("".join(line + "\n" for line in update.lines))
                out.flush()
    return 0


def attach_argv(
    tmux_args: Sequence[str], target: str, transport: Transport | None = None, *, read_only: bool = False
) -> list[str]:
    """The argv that gives this terminal an interactive tmux client on `target`.

    Locally `tmux [-L name | -S path] attach-session -t TARGET`; on a remote transport the same
    command inside `aws ssm start-session` / `aws ecs execute-command` (with the command prefix).
    """
    argv = ["tmux", *tmux_args, "attach-session", "-t", target]
    if read_only:
        argv.append("-r")
    if transport is None or transport.is_local:
        return argv
    return transport.interactive_argv(argv)


def attach_env() -> dict[str, str]:
    """The environment for running `attach_argv`: without $TMUX, which makes tmux refuse to attach
    from inside another tmux session (the usual place to run this console). The job's sessions are on
    a private socket, so this nesting is the intended one."""
    return {key: value for key, value in os.environ.items() if key != "TMUX"}
