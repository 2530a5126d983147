"""Snapshots: one atomic read of a window of a pane's rows, and how to parse it. Pure: no I/O.

`window_commands` is the tmux command list both strategies send (polling as one tmux invocation,
streaming over the control channel); `Snapshot.parse` turns the outputs into rows, colours and the
span of each logical (possibly wrapped) line, with absolute row numbers (0 = oldest history row).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fceval_tui.errors import PermanentError, TransientError
from fceval_tui.services.mirror.control_mode import SGR

FULL = 10**9  # "-S -FULL": tmux clamps to the start of the history
PANE_FORMAT = (
    "#{history_size} #{history_limit} #{cursor_x} #{cursor_y} #{pane_height} #{pane_width} "
    "#{pane_dead} #{alternate_on} #{pane_id} #{session_id}"
)
DEAD_NOTICE = re.compile(r"Pane is dead \((status|signal) ")


class PaneGone(PermanentError):
    """The pane, its session or the tmux server no longer exists."""


@dataclass(frozen=True)
class PaneInfo:
    hsize: int
    hlimit: int
    cx: int
    cy: int
    height: int
    width: int
    dead: bool
    alt: bool
    pane_id: str
    session_id: str

    @classmethod
    def parse(cls, text: str) -> PaneInfo:
        f = text.split()
        if not f:
            # tmux expands the formats of a pane it cannot find to nothing rather than failing.
            raise PaneGone("the pane no longer exists")
        if len(f) != 10:
            raise TransientError(f"unexpected tmux display-message output: {text!r}")
        return cls(*map(int, f[:6]), f[6] == "1", f[7] == "1", f[8], f[9])


def window_commands(pane: str, rows_above: int) -> list[list[str]]:
    """display + two captures of the same rows: from `rows_above` into the history to the bottom."""
    start = str(-rows_above) if rows_above > 0 else "0"
    return [
        ["display-message", "-p", "-t", pane, PANE_FORMAT],
        ["capture-pane", "-p", "-e", "-N", "-t", pane, "-S", start, "-E", "-"],
        ["capture-pane", "-p", "-J", "-t", pane, "-S", start, "-E", "-"],
        # The oldest row (tmux clamps both ends to it): it changes only when history is trimmed or cleared.
        ["capture-pane", "-p", "-t", pane, "-S", "-", "-E", str(-FULL)],
    ]


class Inconsistent(Exception):
    """The two captures of one snapshot do not line up (should not happen; the poll is retried)."""


@dataclass(frozen=True)
class Snapshot:
    info: PaneInfo
    top: int  # absolute row (0 = oldest history row) of rows[0]
    rows: list[str]  # text of each row, colour codes removed
    colored: list[str]  # the same rows with colour codes
    spans: list[tuple[int, int]]  # (first row, last row) of each logical line, absolute
    oldest: str  # text of absolute row 0

    @classmethod
    def parse(cls, outputs: Sequence[str]) -> Snapshot:
        info = PaneInfo.parse(outputs[0])
        colored = split_rows(outputs[1])
        rows = [SGR.sub("", r) for r in colored]
        joined = outputs[2]
        texts = joined.split("\n")
        if texts and texts[-1] == "":
            texts.pop()
        if not info.height <= len(rows) <= info.hsize + info.height:
            raise Inconsistent(f"{len(rows)} rows captured from a pane of {info.height}+{info.hsize} rows")
        top = info.hsize + info.height - len(rows)
        spans: list[tuple[int, int]] = []
        j = 0
        for text in texts:
            first = j
            acc = rows[j] if j < len(rows) else None
            j += 1
            while acc is not None and acc != text and len(acc) < len(text) and j < len(rows):
                acc += rows[j]
                j += 1
            if acc != text:
                raise Inconsistent(f"row {top + first} does not match its joined line")
            spans.append((top + first, top + j - 1))
        if j != len(rows):
            raise Inconsistent(f"{len(rows) - j} rows left over after joining")
        return cls(info, top, rows, colored, spans, outputs[3].rstrip("\n"))

    @property
    def cursor_row(self) -> int:
        return self.info.hsize + self.info.cy

    def line_at(self, row: int) -> int:
        """Index of the logical line containing absolute `row`."""
        for i in range(len(self.spans) - 1, -1, -1):
            if self.spans[i][0] <= row:
                return i
        return 0

    def cursor_line_start(self) -> int:
        return self.spans[self.line_at(self.cursor_row)][0] if self.spans else self.cursor_row

    def text(self, first: int, last: int) -> str:
        return "".join(self.rows[first - self.top : last - self.top + 1])

    def partial(self) -> tuple[str, int]:
        """The unfinished cursor line and the cursor's column within it."""
        start = self.cursor_line_start()
        col = (self.cursor_row - start) * self.info.width + self.info.cx
        return self.text(start, self.cursor_row), col

    def screen(self) -> list[str]:
        return [r.rstrip(" ") for r in self.colored[len(self.colored) - self.info.height :]]

    def row_texts(self, first: int, last: int) -> tuple[str, ...]:
        return tuple(r.rstrip() for r in self.rows[first - self.top : last - self.top])


def content_end(snap: Snapshot) -> int:
    """The row where completed lines end: the cursor line, or for a pane kept after its process
    died (remain-on-exit), the row after the program's last text, above tmux's "Pane is dead"."""
    end = snap.cursor_line_start()
    if not (snap.info.dead and DEAD_NOTICE.match(snap.text(end, snap.cursor_row))):
        return end
    for row in range(end - 1, snap.top - 1, -1):
        if snap.rows[row - snap.top].strip():
            return snap.spans[snap.line_at(row)][1] + 1
    return snap.top


def split_rows(output: str) -> list[str]:
    """capture-pane output as one string per row."""
    rows = output.split("\n")
    if rows and rows[-1] == "":
        rows.pop()
    return rows
