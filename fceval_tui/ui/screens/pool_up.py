"""The `pool up` form of the Pools view: name, size, instance type and TTL, checked as `fceval-tui pool up`
checks them (services.pool.up_errors), each problem shown under the form and its field marked."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from fceval_tui.config import Settings

DEFAULT_NAME = "default"


@dataclass(frozen=True)
class PoolUpRequest:
    name: str
    size: str
    instance_type: str
    ttl: str


class PoolUpScreen(ModalScreen[PoolUpRequest | None]):
    """Dismisses with the checked values, or None."""

    DEFAULT_CSS = """
    PoolUpScreen { align: center middle; }
    PoolUpScreen > Vertical { width: 80; height: auto; border: thick $primary; background: $surface; padding: 0 1; }
    PoolUpScreen #form { height: auto; grid-size: 2; grid-columns: 16 1fr; grid-rows: auto; margin: 1 0; }
    PoolUpScreen #errors { color: $error; height: auto; }
    PoolUpScreen #buttons { height: auto; align-horizontal: right; }
    PoolUpScreen Button { margin-left: 2; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Close", id="pool_up.close")]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.base = settings

    def compose(self) -> ComposeResult:
        ttl = self.base.ttl_minutes
        with Vertical():
            yield Static("[b]Pool up[/b]  EC2 instances kept ready for `launch --pool` (boots take minutes)")
            with Grid(id="form"):
                yield Label("Name")
                yield Input(value=DEFAULT_NAME, id="name", compact=True)
                yield Label("Size")
                yield Input(placeholder="instances, e.g. 3", id="size", compact=True)
                yield Label("Instance type")
                yield Input(value=self.base.ec2_instance_type, id="instance_type", compact=True)
                yield Label("TTL (min)")
                yield Input(value=f"{ttl:g}", id="ttl", compact=True)
            yield Label("", id="errors")
            with Horizontal(id="buttons"):
                yield Button("Close", id="close")
                yield Button("Pool up", id="up", variant="success")

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#up")
    @on(Input.Submitted)
    def _submit(self) -> None:
        from fceval_tui.services.pool import UP_FIELDS, up_errors

        request = PoolUpRequest(*(self.query_one(f"#{field}", Input).value.strip() for field in UP_FIELDS))
        errors = up_errors(self.base, request.name, request.size, request.instance_type, request.ttl)
        for field in UP_FIELDS:
            self.query_one(f"#{field}", Input).set_class(field in errors, "-invalid")
        self.query_one("#errors", Label).update("\n".join(str(exc) for exc in errors.values()))
        if errors:
            self.query_one(f"#{next(iter(errors))}", Input).focus()
            return
        self.dismiss(request)
