"""Pure parsers for the pane mirror: tmux control-mode output and a one-row terminal line model.

No I/O here, so both are tested byte by byte. See services.mirror for how they are used and for
the definition of an "exact" line.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass

_OCTAL = re.compile(rb"\\([0-7]{3})")
SGR = re.compile(r"\x1b\[[0-9;:]*m")


def unescape_output(value: bytes) -> bytes:
    """Undo control mode's escaping of %output data: bytes < 0x20 and backslash are sent as \\ooo."""
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), value)


def cell_width(ch: str) -> int:
    """Terminal cells a character takes, as wcwidth(3) counts them for the text the mirror meets."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


@dataclass(frozen=True)
class Output:
    pane: str
    data: bytes


@dataclass(frozen=True)
class Block:
    """A command reply: the lines between %begin and %end (ok) or %error (not ok)."""

    number: int
    from_client: bool
    ok: bool
    lines: list[bytes]


@dataclass(frozen=True)
class Notice:
    """Any other %notification (%exit, %window-close, %layout-change, ...) or non-protocol text."""

    name: str
    rest: bytes


class ControlParser:
    """Incremental parser for `tmux -C` output, tolerant of a pty (CRLF line ends, echo, the -CC DCS)."""

    def __init__(self) -> None:
        self._buf = b""
        self._block: tuple[bytes, int, bool, list[bytes]] | None = None

    def feed(self, data: bytes) -> list[Output | Block | Notice]:
        self._buf += data
        *complete, self._buf = self._buf.split(b"\n")
        events: list[Output | Block | Notice] = []
        for raw in complete:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: bytes) -> Output | Block | Notice | None:
        if self._block is not None:
            guard, number, from_client, lines = self._block
            if line.startswith((b"%end ", b"%error ")) and line.split(b" ", 1)[1] == guard:
                self._block = None
                return Block(number, from_client, line.startswith(b"%end"), lines)
            lines.append(line)
            return None
        if line.startswith(b"\x1bP1000p"):  # -CC wraps the session in a DCS
            line = line[len(b"\x1bP1000p") :]
        if line.startswith(b"%begin "):
            guard = line.split(b" ", 1)[1]
            fields = guard.split(b" ")
            number = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else -1
            from_client = len(fields) > 2 and fields[2] == b"1"
            self._block = (guard, number, from_client, [])
            return None
        if line.startswith(b"%output "):
            parts = line.split(b" ", 2)
            value = parts[2] if len(parts) > 2 else b""
            return Output(parts[1].decode("ascii", "replace"), unescape_output(value))
        if line.startswith(b"%"):
            name, _, rest = line.partition(b" ")
            return Notice(name.decode("ascii", "replace"), rest)
        if line.strip():
            return Notice("text", line)
        return None


class LineAssembler:
    """Turns a pane's raw output into completed lines, the way a user watching the pane sees them.

    The cursor's row (or, for a long line, the rows it wrapped over) is a list of cells.
    Printable characters overwrite the cell under the cursor; CR returns to the start of the
    current screen row; BS moves left; TAB moves to the next multiple of 8; CSI K erases to the
    end; CSI G/C/D move within the line. LF completes the line: its cells, joined and right-
    trimmed, are delivered, and an empty line starts. Cursor addressing (CSI H/f/d/A/B) or an
    erase of the display moves the cursor away from the row without completing it: that text
    belongs to the screen, not to the line log. SGR and all other escape sequences are dropped.

    Each `feed` also says how the pane's rows relate to the lines (for a reader of the pane that
    must find its place among them again): `cleared_after` is set when the output emptied the pane
    (cursor home, erase display, then erase scrollback, as `clear` does: no row is left, so the
    next line is the pane's row 0) to the number of that feed's lines completed before it;
    `moved_rows` is set when, after that, the output moved the cursor to another row or erased
    or scrolled rows, so that rows no longer follow the lines one to one. Both ignore the
    alternate screen (`alt_screen`), whose rows are not the pane's history.
    """

    def __init__(self, width: int = 80) -> None:
        self.width = max(1, width)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._cells: list[str] = []
        self._col = 0
        self._pending_wrap = False
        self._state = "text"  # text | esc | csi | string (OSC/DCS/APC/PM/SOS) | string_esc
        self._params = ""
        self.alt_screen = False
        self.cleared_after: int | None = None
        self.moved_rows = False
        self._home = False  # the cursor is known to be at the top left of the screen
        self._blank = False  # the screen is known to be blank
        self._done = 0  # lines completed in the current feed

    def set_line(self, text: str, col: int) -> None:
        """Start from a partially written line (e.g. the cursor row read with capture-pane)."""
        self._cells = []
        for ch in text:
            self._put(ch)
        self._col = max(0, min(col, len(self._cells)))
        self._pending_wrap = False
        self._home = self._blank = False

    def partial(self) -> str:
        return "".join(self._cells).rstrip()

    def feed(self, data: bytes) -> list[str]:
        done: list[str] = []
        self.cleared_after, self.moved_rows, self._done = None, False, 0
        for ch in self._decoder.decode(data):
            self._char(ch, done)
        return done

    def _char(self, ch: str, done: list[str]) -> None:
        state = self._state
        if state == "text":
            if ch == "\x1b":
                self._state = "esc"
            elif ch == "\n":
                done.append(self.partial())
                self._cells, self._col, self._pending_wrap = [], 0, False
                self._home = False
                self._done += 1
            elif ch == "\r":
                self._col = self._row_start()
                self._pending_wrap = False
            elif ch == "\b":
                if self._col > self._row_start():
                    self._col -= 1
                self._pending_wrap = False
            elif ch == "\t":
                self._home = False
                start = self._row_start()
                self._col = min(start + ((self._col - start) // 8 + 1) * 8, start + self.width - 1)
                self._pending_wrap = False
            elif ch >= " " and ch != "\x7f":
                self._put(ch)
                self._home = self._blank = False
        elif state == "esc":
            if ch == "[":
                self._state, self._params = "csi", ""
            elif ch in "]PX^_":
                self._state = "string"
            else:
                self._state = "text"  # two-character escapes (ESC 7, ESC =, ...) do not touch the line
                if ch in "MDEc8":  # reverse index, index, next line, reset, restore cursor
                    self._rows_moved()
                    self._home = self._blank = False
        elif state == "csi":
            if "\x40" <= ch <= "\x7e":
                self._csi(ch)
                self._state = "text"
            else:
                self._params += ch
        elif state == "string":
            if ch == "\x07":
                self._state = "text"
            elif ch == "\x1b":
                self._state = "string_esc"
        elif state == "string_esc":
            self._state = "text" if ch == "\\" else "string"

    def _row_start(self) -> int:
        col = self._col - self.width if self._pending_wrap else self._col
        return (col // self.width) * self.width

    def _put(self, ch: str) -> None:
        w = cell_width(ch)
        if w == 0:
            if self._col > 0 and self._col <= len(self._cells):
                self._cells[self._col - 1] += ch
            return
        within = self._col % self.width
        if w == 2 and within == self.width - 1 and not self._pending_wrap:
            # tmux moves a wide character that does not fit to the next row, leaving the last cell
            # unused (capture-pane -J joins the rows without it), so the filler cell is empty.
            self._set(self._col, "")
            self._col += 1
        self._set(self._col, ch)
        if w == 2:
            self._set(self._col + 1, "")
        self._col += w
        self._pending_wrap = self._col % self.width == 0

    def _set(self, col: int, ch: str) -> None:
        while len(self._cells) <= col:
            self._cells.append(" ")
        self._cells[col] = ch

    def _rows_moved(self) -> None:
        if not self.alt_screen:
            self.moved_rows = True

    def _csi(self, final: str) -> None:
        params = self._params
        if params[:1] in ("?", ">", "<", "="):
            # Private modes (cursor visibility, bracketed paste, ...): only the alternate screen matters.
            if params[:1] == "?" and final in "hl" and {"47", "1047", "1049"} & set(params[1:].split(";")):
                self.alt_screen = final == "h"
                self._home = self._blank = False
            return
        try:
            n = int(params.split(";")[0] or 0)
        except ValueError:
            n = 0
        start = self._row_start()
        if final == "J" and not self.alt_screen:
            self._erase_display(n, params)
        elif final in "HfdABEFLMSTr" and not self.alt_screen:
            self._rows_moved()
            self._home = final in "Hf" and all(p in ("", "1") for p in params.split(";"))
            self._blank = self._blank and final in "HfdABEF"  # moving the cursor writes nothing
        if final == "K":
            if n == 0:
                del self._cells[self._col :]
            elif n == 1:
                for i in range(start, min(self._col + 1, len(self._cells))):
                    self._cells[i] = " "
            else:
                self._cells = [" "] * min(len(self._cells), start)
        elif final == "G":
            self._col = start + min(max(n, 1) - 1, self.width - 1)
        elif final == "C":
            self._col = min(self._col + max(n, 1), start + self.width - 1)
        elif final == "D":
            self._col = max(self._col - max(n, 1), start)
        elif final == "J":
            if n == 0:
                del self._cells[self._col :]
            elif n in (1, 2):
                # Text erased before its line was completed never becomes a line.
                self._cells = [] if n == 2 else [" "] * min(len(self._cells), self._col + 1)
            # n == 3 erases only the scrollback: the row is untouched.
        elif final in "HfdABEF":
            # The cursor leaves the row: what was written there is screen content, not a line.
            self._cells, self._col = [], 0
        else:
            return
        self._pending_wrap = False
        self._home = self._home and self._col == 0

    def _erase_display(self, n: int, params: str) -> None:
        if n == 3 and params == "3" and self._home and self._blank:
            # Nothing is left of the pane: not a row of history, not a character on the screen.
            self.cleared_after, self.moved_rows = self._done, False
        elif n == 2 or (n == 0 and self._home):
            self._rows_moved()  # tmux moves the screen's rows into the history (scroll-on-clear)
            self._blank = True
        elif n != 0:
            self._rows_moved()
            self._home = self._blank = False
