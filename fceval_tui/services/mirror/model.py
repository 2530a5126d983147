"""The pure model of the mirror: what an update carries, and how snapshots become lines. No I/O.

`Tracker` turns successive snapshots (see snapshot.py) into the completed lines not yet delivered,
with a gap when rows could not be read; `PendingUpdate` gathers what one `Mirror.poll` returns.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from fceval_tui.services.mirror.snapshot import FULL, Snapshot, content_end

log = logging.getLogger(__name__)

ANCHOR_ROWS = 3


@dataclass(frozen=True)
class MirrorUpdate:
    lines: list[str] = field(default_factory=list)
    gap: int = 0  # rows not captured just before `lines` (a lower bound when gap_exact is False)
    screen: list[str] | None = None  # visible rows with colour codes, when changed/refreshed
    ended: bool = False  # the pane's process exited or the session is gone; nothing more will come
    reconnecting: bool = False  # the stream dropped; the mirror is reconnecting
    gap_exact: bool = True
    # Sessions to the pane keep failing the same way (the remote's words and the fix); still retrying.
    session_failure: str = ""

    def gap_text(self) -> str | None:
        """A notice for the user, or None when nothing was missed."""
        if self.gap and self.gap_exact:
            return f"{self.gap} lines not captured"
        if self.gap:
            return f"at least {self.gap} lines not captured"
        if not self.gap_exact:
            return "the pane was cleared or its history trimmed; some earlier lines may not have been captured"
        return None

    def __bool__(self) -> bool:
        return bool(
            self.lines or self.gap or self.screen is not None or self.ended or self.reconnecting or self.session_failure
        ) or (not self.gap_exact)


@dataclass(frozen=True)
class Step:
    lines: list[str]
    gap: int = 0
    exact: bool = True


@dataclass
class PendingUpdate:
    """What the next update will carry: lines and gaps add up until `take` hands them out."""

    lines: list[str] = field(default_factory=list)
    gap: int = 0
    gap_exact: bool = True
    screen: list[str] | None = None
    ended: bool = False
    reconnecting: bool = False
    session_failure: str = ""

    def add(self, step: Step) -> None:
        if step.gap and self.lines:
            log.debug("gap after %d lines in one update", len(self.lines))
        self.gap += step.gap
        self.gap_exact = self.gap_exact and step.exact
        self.lines.extend(step.lines)

    def has_news(self) -> bool:
        """Something to hand out now (an end is handed out by the caller, which stops waiting)."""
        return bool(self.lines or self.screen is not None or self.gap or self.reconnecting or self.session_failure)

    def take(self) -> MirrorUpdate:
        update = MirrorUpdate(
            self.lines, self.gap, self.screen, self.ended, self.reconnecting, self.gap_exact, self.session_failure
        )
        self.lines, self.gap, self.gap_exact, self.screen, self.reconnecting = [], 0, True, None, False
        self.session_failure = ""
        return update


@dataclass(frozen=True)
class Frontier:
    """Everything before absolute `row` has been delivered (as of a snapshot with these dimensions)."""

    row: int
    hsize: int
    hlimit: int
    width: int
    cursor_row: int
    anchor: tuple[str, ...]  # the rows just above `row`, trimmed
    oldest: str  # the oldest row then: if it changed, history was trimmed (or cleared)


class Tracker:
    """Turns successive snapshots into new lines. Needs wider windows by returning a row number."""

    def __init__(self) -> None:
        self.frontier: Frontier | None = None
        self._tail: deque[str] = deque(maxlen=ANCHOR_ROWS)

    def reset_to(self, snap: Snapshot) -> None:
        """Deliver nothing up to the current cursor line (start without backlog, or resync)."""
        self._set(snap, snap.cursor_line_start())

    def reset_to_cleared(self) -> None:
        """The pane was emptied, history and screen (seen in the stream): the next line is row 0."""
        fr = self.frontier
        if fr is not None:
            self.frontier = Frontier(0, 0, fr.hlimit, fr.width, 0, (), "")

    def remember(self, lines: Sequence[str]) -> None:
        """Lines delivered by other means (the stream), for finding our place after a reflow."""
        self._tail.extend(lines)

    def needed_rows_above(self, growth: int) -> int:
        """A window size likely to cover the frontier, its anchor and `growth` new rows."""
        if self.frontier is None:
            return FULL
        fr = self.frontier
        return max(0, fr.hsize - fr.row + len(fr.anchor)) + growth

    def advance(self, snap: Snapshot) -> Step | int:
        """New lines since the frontier, or the absolute row the window must reach back to."""
        if snap.info.alt:
            return Step([])  # a full-screen program: its rows are screen, and history is frozen
        located = self._locate(snap)
        if isinstance(located, int):
            return located
        start, gap, exact = located
        end = content_end(snap)
        lines: list[str] = []
        for first, last in snap.spans:
            if last < start or first >= end:
                continue
            lines.append(snap.text(max(first, start), last).rstrip())
        self._tail.extend(lines)
        self._set(snap, max(end, start))
        return Step(lines, gap, exact)

    def _set(self, snap: Snapshot, row: int) -> None:
        # The anchor is every visible row above the frontier (they are captured anyway), and at
        # least ANCHOR_ROWS: a clear followed by new output must change some of them to go unseen.
        lo = max(snap.top, min(row - ANCHOR_ROWS, snap.info.hsize))
        i = snap.info
        self.frontier = Frontier(row, i.hsize, i.hlimit, i.width, snap.cursor_row, snap.row_texts(lo, row), snap.oldest)

    def _locate(self, snap: Snapshot) -> tuple[int, int, bool] | int:
        fr, info = self.frontier, snap.info
        if fr is None:
            # From the start of the history; if tmux has trimmed it, earlier lines are gone.
            trimmed = info.hsize > info.hlimit - max(1, info.hlimit // 10)
            return (0, 0, not trimmed) if snap.top == 0 else 0
        if info.width != fr.width or info.hlimit != fr.hlimit:
            return self._search(snap)
        trim = max(1, fr.hlimit // 10)
        trimmed_possible = info.hsize > info.hlimit - trim
        # No trim is possible only if history did not shrink and its oldest row is the same.
        # (The oldest row is only final once delivered: before that it may still be written to.)
        same_oldest = snap.oldest == fr.oldest or fr.row == 0 or not trimmed_possible
        ks = [0] if info.hsize >= fr.hsize and same_oldest else []
        if trimmed_possible:
            ks += range(1, fr.row // trim + 2)
        cursor_start = snap.cursor_line_start()
        for k in ks:
            f = fr.row - k * trim
            if f < 0:
                # The frontier itself was trimmed away: at least -f rows went unread.
                return (0, -f, False) if snap.top == 0 else 0
            if f > cursor_start:
                continue  # the pane now ends above where we were: not this k
            a = min(len(fr.anchor), f)
            if f - a < snap.top:
                return f - a
            if snap.row_texts(f - a, f) == fr.anchor[len(fr.anchor) - a :]:
                # With nothing above the frontier to compare, a trim cannot be ruled out.
                return (f, 0, a > 0 or not trimmed_possible)
        # Rows above the frontier changed or vanished without trimming: the pane was cleared.
        return (0, 0, False) if snap.top == 0 else 0

    def _search(self, snap: Snapshot) -> tuple[int, int, bool] | int:
        """After a width change tmux re-wraps every line: find the last lines delivered by content."""
        if snap.top != 0:
            return 0
        tail = list(self._tail)
        texts = [snap.text(first, last).rstrip() for first, last in snap.spans]
        end = snap.line_at(snap.cursor_line_start())  # index of the cursor line
        hits = [i for i in range(len(tail), end + 1) if tail and texts[i - len(tail) : i] == tail]
        if not hits:
            return (0, 0, False)
        # The last occurrence is the likeliest; more than one means repeated text: say it is not exact.
        return (snap.spans[hits[-1]][0], 0, len(hits) == 1)


def overlap(seen: list[str], lines: list[str], exact: bool) -> int:
    """How many of `lines` (read back after a reconnect) the stream had already delivered as `seen`."""
    if exact:
        return len(seen) if lines[: len(seen)] == seen else 0
    # History was trimmed or cleared: the largest overlap of the end of `seen` with the start of
    # `lines` (whose first line may have lost its beginning to the trim).
    for k in range(min(len(seen), len(lines)), 0, -1):
        if lines[1:k] == seen[len(seen) - k + 1 :] and seen[len(seen) - k].endswith(lines[0]):
            return k
    return 0
