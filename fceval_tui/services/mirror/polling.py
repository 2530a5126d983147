"""Polling: the mirror over transports that only run one-shot commands (e.g. SSM SendCommand).

Each poll is one atomic tmux command list (snapshot.window_commands): `display-message` (history
size and limit, cursor, size), two captures of the rows from the last position to the bottom
(`-e -N` per row, and `-J` joined, to know which rows wrapped) and one of the oldest row. The last
position is an absolute row, corrected for history trimming (tmux drops a tenth of the limit at a
time) and verified against the rows seen just above it, never found by searching for text, so
repeated output cannot mislead it; the oldest row tells whether history was trimmed at all.
Polling is exact while fewer rows than the history holds arrive between polls and the pane is not
cleared. Otherwise it reports a gap: how many rows tmux dropped is only known modulo a tenth of
the history limit, so such a gap is a lower bound (`gap_exact` False). What no poller can see is
said here rather than hidden: lines printed and cleared between two polls; a clear followed by the
very rows that stood there before; and, with a full history, output that repeats the rows above
it at a distance of whole tenths of the limit, e.g. with a period dividing a tenth, or printing
again the last screenfuls (k and k+j trims then read the same). Use streaming where the exact line
log matters.
"""

from __future__ import annotations

import logging
import threading
import time

from fceval_tui.errors import TransientError
from fceval_tui.services.mirror.model import ANCHOR_ROWS, Step
from fceval_tui.services.mirror.snapshot import (
    DEAD_NOTICE,
    FULL,
    Inconsistent,
    PaneGone,
    PaneInfo,
    Snapshot,
    window_commands,
)
from fceval_tui.services.mirror.strategy import MirrorStrategy
from fceval_tui.services.mirror.tmux_io import TmuxCli

log = logging.getLogger(__name__)


class PollingMirror(MirrorStrategy):
    """Looks at the pane every `interval` seconds with one atomic tmux command list."""

    def __init__(
        self,
        tmux: TmuxCli,
        pane: PaneInfo,
        closing: threading.Event,
        *,
        from_start: bool,
        want_screen: bool,
        interval: float,
    ) -> None:
        super().__init__(tmux, pane, closing, from_start=from_start, want_screen=want_screen)
        self.interval = interval
        self._growth = 16  # new rows the next window allows for: twice the last poll's lines
        self._next_poll = 0.0

    def start(self) -> None:
        if not self.from_start:
            self.tracker.reset_to(self.snapshot(0))

    def close(self) -> None:
        """Nothing to release: `wait` sleeps on `closing`, which wakes it."""

    def snapshot(self, rows_above: int) -> Snapshot:
        for attempt in range(4):
            try:
                return Snapshot.parse(self.tmux.batch(window_commands(self.pane_id, rows_above)))
            except Inconsistent as exc:
                log.warning("inconsistent capture (attempt %d): %s", attempt + 1, exc)
        raise TransientError(f"could not read a consistent snapshot of pane {self.pane_id}")

    def wait(self, timeout: float | None) -> None:
        pause = max(0.0, self._next_poll - time.monotonic())
        if timeout is not None and pause > timeout:
            self.closing.wait(timeout)
            return
        if pause and self.closing.wait(pause):
            return
        self._next_poll = time.monotonic() + self.interval
        self.observe_once()

    def observe_once(self) -> None:
        """One look at the pane: new lines, the screen if it changed, and whether the pane has ended."""
        try:
            rows_above = self.tracker.needed_rows_above(self._growth)
            for _ in range(3):
                snap = self.snapshot(rows_above)
                step = self.tracker.advance(snap)
                if isinstance(step, Step):
                    break
                rows_above = snap.info.hsize - step + ANCHOR_ROWS
            else:
                snap = self.snapshot(FULL)
                step = self.tracker.advance(snap)
                assert isinstance(step, Step)
        except PaneGone:
            self.pending.gap_exact = False  # output between the last poll and the end is unknown
            self.end()
            return
        self._growth = max(16, 2 * len(step.lines))
        self.pending.add(step)
        self.offer_screen(snap.screen())
        if snap.info.dead:
            text, _ = snap.partial()
            # With remain-on-exit, tmux writes its own "Pane is dead (...)" line: not the program's.
            if text.rstrip() and not DEAD_NOTICE.match(text):
                self.pending.lines.append(text.rstrip())
            self.end()
