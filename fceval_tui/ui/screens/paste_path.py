"""The attach view's prompt for a file to paste into the pane."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PastePathScreen(ModalScreen[str | None]):
    """Type a path (~ works); Enter pastes the file, Escape goes back."""

    DEFAULT_CSS = """
    PastePathScreen { align: center middle; }
    PastePathScreen > Vertical { width: 80; height: auto; border: thick $accent; background: $surface; padding: 1 2; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Back", id="paste.back")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Paste a UTF-8 text file into the pane (its size and hash are logged, never its content):")
            yield Input(placeholder="path, e.g. ~/prompt.txt", id="path")

    @on(Input.Submitted, "#path")
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)
