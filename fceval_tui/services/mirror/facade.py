"""`Mirror`: one tmux pane, local or remote, followed by streaming or by polling, and typed into.

Use from a worker thread (nothing here touches Textual; every call may block)::

    mirror = Mirror(transport, ("-L", socket_name), job_id, from_start=True)
    with mirror:                       # start(): resolves the pane, raises NotFoundError
        for update in mirror:          # blocks; yields each MirrorUpdate until the pane ends
            post(update)               # update.lines, .gap, .gap_exact, .screen, .ended, .reconnecting
    # another thread may call mirror.close() to stop the loop; poll(timeout) is the non-iterator form.

Input: `send_keys(*keys)`, `run_and_wait(command, timeout)` (returns when the command typed into
the pane's shell has finished), `paste(text)` (any size, through a tmux buffer).
`screen()` is the visible pane, one string per row, with SGR colour codes (`capture-pane -e`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Literal

from fceval_tui.errors import NotFoundError
from fceval_tui.services.mirror import input as pane_input
from fceval_tui.services.mirror.model import MirrorUpdate
from fceval_tui.services.mirror.polling import PollingMirror
from fceval_tui.services.mirror.snapshot import PaneGone, split_rows
from fceval_tui.services.mirror.strategy import MirrorStrategy
from fceval_tui.services.mirror.streaming import StreamingMirror
from fceval_tui.services.mirror.tmux_io import TmuxCli
from fceval_tui.transports.base import Transport
from fceval_tui.transports.local import LocalTransport
from fceval_tui.transports.retry import RetryPolicy


class Mirror:
    """Mirror one tmux pane. `target` is anything tmux accepts with -t (session, session:window.pane, %id).

    `mode` "auto" streams when the transport can open a stream and polls otherwise.
    """

    def __init__(
        self,
        transport: Transport | None,
        tmux_args: Sequence[str],
        target: str,
        *,
        mode: Literal["auto", "stream", "poll"] = "auto",
        from_start: bool = False,
        want_screen: bool = True,
        poll_interval: float = 0.5,
        screen_interval: float = 0.1,
        check_interval: float = 1.0,
        retry_policy: RetryPolicy | None = None,
        command_timeout: float = 30.0,
    ) -> None:
        self.transport = transport or LocalTransport()
        self.tmux = TmuxCli(self.transport, tmux_args, command_timeout)
        self.target = target
        if mode == "auto":
            mode = "stream" if self.transport.can_stream() else "poll"
        self.mode = mode
        self.from_start = from_start
        self.want_screen = want_screen
        self.poll_interval = poll_interval
        self.screen_interval = screen_interval
        self.check_interval = check_interval
        self.retry_policy = retry_policy or RetryPolicy(attempts=8, base=0.5, cap=10.0)
        self.pane_id = ""
        self.session_id = ""
        self._closing = threading.Event()
        self._strategy: MirrorStrategy | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Mirror:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._strategy is not None:
            return
        try:
            info = self.tmux.pane_info(self.target)
        except PaneGone as exc:
            socket = " ".join(self.tmux.tmux_args) or "the default socket"
            raise NotFoundError(
                f"no tmux pane {self.target!r} on {socket} ({self.transport.describe()}): {exc}",
                fix=f"list what exists with `tmux {socket if self.tmux.tmux_args else ''} ls`; for a job, check "
                "`fceval-tui status` (its session may have ended)",
            ) from exc
        self.pane_id, self.session_id = info.pane_id, info.session_id
        if self.mode == "stream":
            self._strategy = StreamingMirror(
                self.tmux,
                info,
                self._closing,
                from_start=self.from_start,
                want_screen=self.want_screen,
                screen_interval=self.screen_interval,
                check_interval=self.check_interval,
                retry_policy=self.retry_policy,
            )
        else:
            self._strategy = PollingMirror(
                self.tmux,
                info,
                self._closing,
                from_start=self.from_start,
                want_screen=self.want_screen,
                interval=self.poll_interval,
            )
        self._strategy.start()

    def close(self) -> None:
        self._closing.set()
        if self._strategy is not None:
            self._strategy.close()

    @property
    def ended(self) -> bool:
        return self._strategy is not None and self._strategy.ended

    @property
    def in_sync(self) -> bool:
        """Streaming: attached and caught up (False while connecting or reconnecting). Polling: True."""
        return self.mode == "poll" or (self._strategy is not None and self._strategy.in_sync)

    @property
    def reconnects(self) -> int:
        """How many times a dropped stream has been re-opened."""
        return self._strategy.reconnects if self._strategy is not None else 0

    @property
    def bytes_read(self) -> int:
        """Bytes received from tmux so far (both channels), for benchmarks."""
        streamed = self._strategy.bytes_streamed if self._strategy is not None else 0
        return self.tmux.bytes_read + streamed

    def __iter__(self) -> Iterator[MirrorUpdate]:
        while not self._closing.is_set():
            update = self.poll(timeout=1.0)
            if update:
                yield update
            if update.ended:
                return

    def poll(self, timeout: float | None = None) -> MirrorUpdate:
        """Wait up to `timeout` seconds (None: until something happens) for the next update."""
        self.start()
        strategy = self._strategy
        assert strategy is not None
        if not strategy.ended:  # once ended: what was read before the end (then just ended=True)
            strategy.wait(timeout)
        return strategy.pending.take()

    # -- screen and input --------------------------------------------------------------------
    def screen(self) -> list[str]:
        """The visible pane now, one string per row, with colour codes."""
        self.start()
        out = self.tmux.run("capture-pane", "-p", "-e", "-t", self.pane_id)
        return [r.rstrip(" ") for r in split_rows(out)]

    def send_keys(self, *keys: str, literal: bool = False) -> None:
        """`tmux send-keys`: key names (Enter, C-c, ...) or, with literal=True, text typed as is."""
        self.start()
        pane_input.send_keys(self.tmux, self.pane_id, *keys, literal=literal)

    def run_and_wait(self, command: str, timeout: float = 600.0) -> None:
        """Type `command` into the pane's shell and return once it has finished (see input.run_and_wait)."""
        self.start()
        pane_input.run_and_wait(self.tmux, self.pane_id, command, timeout)

    def paste(self, text: str, progress: pane_input.Progress | None = None) -> None:
        """Paste `text` into the pane through a tmux buffer (in chunks when the transport needs it,
        `progress` told after each)."""
        self.start()
        pane_input.paste(self.tmux, self.pane_id, text, progress)
