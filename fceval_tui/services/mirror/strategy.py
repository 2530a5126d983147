"""What both ways of watching a pane share (streaming.py, polling.py): the pane, the tracker of what
has been delivered, and the update being built. The facade (`Mirror`) picks one and hands it out."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from fceval_tui.services.mirror.model import PendingUpdate, Tracker
from fceval_tui.services.mirror.snapshot import PaneInfo
from fceval_tui.services.mirror.tmux_io import TmuxCli


class MirrorStrategy(ABC):
    """One way of watching one pane, resolved to `pane`; `closing` is set by `Mirror.close`."""

    def __init__(
        self, tmux: TmuxCli, pane: PaneInfo, closing: threading.Event, *, from_start: bool, want_screen: bool
    ) -> None:
        self.tmux = tmux
        self.pane_id, self.session_id = pane.pane_id, pane.session_id
        self.closing = closing
        self.from_start = from_start
        self.want_screen = want_screen
        self.tracker = Tracker()
        self.pending = PendingUpdate()
        self.ended = False
        self._last_screen: list[str] | None = None

    @abstractmethod
    def start(self) -> None:
        """Take the first look at the pane: after this returns, everything the pane prints is captured."""

    @abstractmethod
    def wait(self, timeout: float | None) -> None:
        """Gather into `pending` what happens within `timeout` seconds (None: until something does)."""

    @abstractmethod
    def close(self) -> None:
        """Called from any thread after `closing` is set: make a blocked `wait` return soon."""

    @property
    def in_sync(self) -> bool:
        return True

    @property
    def reconnects(self) -> int:
        return 0

    @property
    def bytes_streamed(self) -> int:
        """Bytes received outside `tmux` (a control channel), for benchmarks."""
        return 0

    def offer_screen(self, screen: list[str]) -> None:
        if self.want_screen and screen != self._last_screen:
            self._last_screen = screen
            self.pending.screen = screen

    def end(self) -> None:
        self.ended = True
        self.pending.ended = True
