"""The mirrored pane: completed lines as scrollback, gap notices, and the live screen with colours."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog, Static

SCREEN_ROWS = 3
MAX_LINES = 20000


class PaneView(Vertical):
    DEFAULT_CSS = """
    PaneView #scrollback { height: 1fr; border: none; }
    PaneView #screen { height: auto; max-height: 50%; border-top: solid $panel; border-title-color: $text-muted; }
    PaneView.full #scrollback { display: none; }
    PaneView.full #screen { height: 1fr; max-height: 100%; border-top: none; }
    """

    def compose(self) -> ComposeResult:
        yield RichLog(max_lines=MAX_LINES, wrap=True, auto_scroll=True, id="scrollback")
        screen = Static("", id="screen")
        screen.border_title = "live screen (f: whole screen)"
        yield screen

    def add_lines(self, lines: list[str | Text]) -> None:
        log = self.query_one(RichLog)
        for line in lines:
            log.write(line if isinstance(line, Text) else Text(line))

    def add_notice(self, text: str, style: str = "bold yellow") -> None:
        self.query_one(RichLog).write(Text(f"── {text} ──", style=style))

    def show_screen(self, rows: list[str]) -> None:
        if not self.has_class("full"):
            # Below the scrollback only the bottom of the screen matters: the line being written.
            while rows and not rows[-1].strip():
                rows = rows[:-1]
            rows = rows[-SCREEN_ROWS:]
        self.query_one("#screen", Static).update(Text.from_ansi("\n".join(rows)))

    def toggle_full(self) -> None:
        self.toggle_class("full")
