"""A line of a program's raw output as the terminal showed it (saved output, log streams).

The live mirror gets lines already drawn by tmux; saved output is the bytes the program wrote, where
a progress bar is one line rewritten with carriage returns.
"""

from __future__ import annotations

import re

from rich.ansi import AnsiDecoder
from rich.text import Text

_CONTROL = re.compile(r"(\r|\x1b\[[012]?K)")
_ERASE = re.compile(r"\x1b\[([012]?)K")


def as_shown(raw: str) -> Text:
    """`raw` (one line, without its line feed) as a terminal shows it: a carriage return goes back to
    column 0 and what follows overwrites, erase-in-line (CSI K) erases, SGR colours are kept and
    other escape sequences dropped."""
    decoder = AnsiDecoder()  # keeps the colour in effect across the pieces of the line
    shown = Text()
    col = 0
    for token in _CONTROL.split(raw):
        if token == "\r":
            col = 0
        elif erase := _ERASE.fullmatch(token):
            mode = erase.group(1) or "0"
            if mode == "0":
                shown = shown[:col]
            elif mode == "1":
                shown = Text(" " * (col + 1)) + shown[col + 1 :]
            else:
                shown = Text(" " * col)
        elif token:
            piece = decoder.decode_line(token)
            shown = shown[:col] + piece + shown[col + len(piece) :]
            col += len(piece)
    return shown
