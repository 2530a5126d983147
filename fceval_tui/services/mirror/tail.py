"""`fceval-tui tail` and `fceval-tui attach`: print a pane's new lines; argv for an interactive attach,
and the check that such an attach can work before the terminal is handed to it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from fceval_tui.errors import NotFoundError
from fceval_tui.services.mirror.facade import Mirror
from fceval_tui.services.mirror.session_failure import (
    STATUS_FIX,
    FailureStreak,
    SessionError,
    SessionFailure,
    classify,
)
from fceval_tui.transports.base import Stream, Transport
from fceval_tui.transports.retry import RetryPolicy

PROBE_MARK = "fceval-tui-attach-probe"


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
    UserError) when the target does not exist, SessionError (also a UserError) when sessions to it
    keep failing for a reason retrying cannot mend. Gaps (possible only when polling or after a
    reconnect) and failures still being retried are reported on `err` (stderr by default), never
    mixed into `out`.
    """
    err = err if err is not None else sys.stderr
    mirror = Mirror(transport, tmux_args, target, from_start=from_start, want_screen=False)
    with mirror:
        for update in mirror:
            notice = update.gap_text()
            if notice:
                print(f"fceval-tui tail: {notice}", file=err, flush=True)
            if update.session_failure:
                print(f"fceval-tui tail: {update.session_failure}", file=err, flush=True)
            elif update.reconnecting:
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


def check_attachable(
    transport: Transport | None,
    tmux_args: Sequence[str],
    target: str,
    *,
    on_failure: Callable[[str], None] | None = None,
    retry_policy: RetryPolicy | None = None,
    timeout: float = 30.0,
) -> None:
    """Before `attach` hands the terminal over: ask for the pane the way the attach will reach it.

    Remotely that is a session of its own (a Session Manager session runs as another user than
    Run Command, so only a session can tell whether a session sees the job's tmux). A failure is
    retried where a retry can help, told through `on_failure` once it repeats, and raised as
    SessionError (the remote's words and the fix) when retrying cannot help or runs out.
    """
    argv = ["tmux", *tmux_args, "display-message", "-p", "-t", target, PROBE_MARK]
    if transport is None or transport.is_local:
        from fceval_tui.transports.local import LocalTransport

        result = (transport or LocalTransport()).run(argv, timeout=timeout)
        if not result.ok:
            words = " ".join((result.stderr or result.stdout).split()) or f"tmux exited {result.exit_code}"
            raise NotFoundError(f"cannot attach to {target!r}: {words}", STATUS_FIX)
        return
    policy = retry_policy or RetryPolicy(attempts=8, base=0.5, cap=5.0)
    streak = FailureStreak()
    told = None
    for attempt in range(policy.attempts):
        output = _read_all(transport.open_stream(argv), timeout)
        if PROBE_MARK.encode() in output:
            return
        failure = classify(output) or SessionFailure(
            "other", "the session ended without a word", STATUS_FIX, permanent=False
        )
        where, due = transport.describe(), streak.add(failure)
        if attempt + 1 == policy.attempts or (due and failure.permanent):
            raise SessionError(failure, where, streak.attempts)
        if due and on_failure is not None and failure != told:
            told = failure
            on_failure(f"{failure.message(where)} (fix: {failure.fix}); retrying")
        policy.sleep(policy.delay(attempt))


def _read_all(stream: Stream, timeout: float) -> bytes:
    """Everything a short session prints, until it ends (or `timeout` passes: then what came)."""
    deadline = time.monotonic() + timeout
    data = b""
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = stream.read(65536, timeout=min(left, 1.0))
            except TimeoutError:
                continue
            if not chunk:
                break
            data += chunk
    finally:
        stream.close()
    return data
