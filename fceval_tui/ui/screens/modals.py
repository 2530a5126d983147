"""Small modal screens: confirmation (optionally typed), help, and the `:` view jump."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no, or (with `typed`) the user must type the given word to confirm."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical { width: 70; height: auto; border: thick $error; background: $surface; padding: 1 2; }
    ConfirmScreen Label { width: 100%; }
    ConfirmScreen Horizontal { height: auto; margin-top: 1; align-horizontal: right; }
    ConfirmScreen Button { margin-left: 2; }
    """
    BINDINGS = [Binding("escape", "dismiss(False)", "Back", id="confirm.back")]

    def __init__(self, question: str, confirm_label: str = "Yes", typed: str | None = None) -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm_label
        self.typed = typed

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, markup=False)  # questions quote user data
            if self.typed:
                yield Label(f"Type [b]{self.typed}[/b] to confirm:")
                yield Input(id="typed")
            with Horizontal():
                yield Button("Back", id="no")
                yield Button(self.confirm_label, id="yes", variant="error", disabled=bool(self.typed))

    @on(Input.Changed, "#typed")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#yes", Button).disabled = event.value.strip() != self.typed

    @on(Input.Submitted, "#typed")
    def _typed_submit(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.typed:
            self.dismiss(True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class HelpScreen(ModalScreen[None]):
    """Every binding active on the screen below, with its id (for keymap.toml)."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90; max-height: 90%; border: thick $primary; background: $surface; padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, rows: list[tuple[str, str, str]], keymap_path: str) -> None:
        super().__init__()
        self.rows = rows
        self.keymap_path = keymap_path

    def compose(self) -> ComposeResult:
        table = Table(title="Keys", box=None, expand=True)
        table.add_column("key", style="bold")
        table.add_column("action")
        table.add_column("id (remap in keymap.toml)", style="dim")
        for key, description, binding_id in self.rows:
            table.add_row(key, description, binding_id)
        with VerticalScroll():
            yield Static(table)
            yield Static(
                Text.from_markup(
                    "\n[b]Filter[/b] (/): state:failed agent:aide task:x model:y run:r1 backend:local error:capacity, "
                    "!term negates, a bare word matches any field.\n"
                    f'[b]Keymap[/b]: {self.keymap_path}, e.g. \\[keys] "jobs.cancel" = "x"\n'
                    "[b]Views[/b]: their keys are above; : jumps by name, ctrl+p lists every command."
                )
            )


VIEWS = ("jobs", "resources", "events", "pools", "results", "preflight", "teardown", "launch", "help")


class JumpScreen(ModalScreen[str | None]):
    """k9s-style `:` prompt: type a view name (prefixes work)."""

    DEFAULT_CSS = """
    JumpScreen { align: center top; }
    JumpScreen Input { width: 60; margin-top: 3; border: thick $accent; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Back", id="jump.back")]

    def compose(self) -> ComposeResult:
        yield Input(placeholder=":" + " | ".join(VIEWS), suggester=SuggestFromList(VIEWS), id="jump")

    @on(Input.Submitted)
    def _go(self, event: Input.Submitted) -> None:
        word = event.value.strip().lstrip(":").lower()
        matches = [v for v in VIEWS if v.startswith(word)] if word else []
        if len(matches) == 1 or word in VIEWS:
            self.dismiss(word if word in VIEWS else matches[0])
        else:
            self.notify(f"unknown view {word!r}; one of: {', '.join(VIEWS)}", severity="warning")
