"""Teardown: the plan (every leftover found by tag and by ledger, with age and cost), a selection,
and a typed confirmation before anything is removed; then what was removed and what is left."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, RichLog

from fceval_tui.presentation import duration, money
from fceval_tui.services.teardown import DESTROY, Plan, Scope, execute, make_plan
from fceval_tui.ui.messages import TeardownDone, TeardownPlanned, TeardownProgress
from fceval_tui.ui.screens.modals import ConfirmScreen
from fceval_tui.ui.workers import ReportWorkerErrors

ACTION_STYLE = {"destroy": "bold red", "mark-cancelled": "yellow", "keep": "dim"}
COLUMNS = (
    ("mark", ""),
    ("action", "Action"),
    ("backend", "Backend"),
    ("kind", "Kind"),
    ("id", "Resource"),
    ("age", "Age"),
    ("cost", "Cost so far"),
    ("reason", "Why"),
    ("state", "State"),
    ("run", "Run"),
)


def row_key(key: tuple[str, str, str]) -> str:
    return "\x1f".join(key)


class TeardownScreen(ReportWorkerErrors, Screen):
    DEFAULT_CSS = """
    TeardownScreen #plan { height: 1fr; }
    TeardownScreen #log { height: 8; border: round $secondary; }
    """
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="teardown.back"),
        Binding("space", "toggle", "Select", id="teardown.toggle"),
        Binding("a", "toggle_all", "All/none", id="teardown.toggle_all"),
        Binding("s", "switch_scope", "Orphans/all", id="teardown.scope"),
        Binding("ctrl+r", "refresh", "Refresh", id="teardown.refresh"),
        Binding("x", "execute", "Tear down", id="teardown.execute"),
    ]

    def __init__(self, scope: Scope | None = None) -> None:
        super().__init__()
        self.scope = scope or Scope.orphans()
        self.plan: Plan | None = None
        self.selected: set[tuple[str, str, str]] = set()
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row", zebra_stripes=True, id="plan")
        yield RichLog(id="log", markup=False, wrap=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#plan", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.action_refresh()

    # -- planning ------------------------------------------------------------------------------

    def action_refresh(self) -> None:
        if self.busy:
            return
        self.sub_title = f"{self.scope}: looking for resources…"
        self._plan(self.scope)

    def action_switch_scope(self) -> None:
        self.scope = Scope.all() if self.scope.kind == "orphans" else Scope.orphans()
        self.action_refresh()

    @work(thread=True, exclusive=True, group="teardown-plan", exit_on_error=False)
    def _plan(self, scope: Scope) -> None:
        self.post_message(TeardownPlanned(make_plan(self.app.settings, self.app.ledger, scope)))

    def on_teardown_planned(self, message: TeardownPlanned) -> None:
        plan = message.plan
        if plan.scope != self.scope:
            return  # the user switched scope meanwhile; the newer plan follows
        self.plan = plan
        self.selected = {i.key for i in plan.items}
        table = self.query_one("#plan", DataTable)
        table.clear()
        now = self.app.clock()
        for item in [*plan.items, *plan.kept]:
            r = item.resource
            age = duration((now - r.started_at).total_seconds()) if r.started_at else ""
            table.add_row(
                self._mark(item.key),
                Text(item.action, style=ACTION_STYLE.get(item.action, "")),
                r.backend,
                r.kind,
                r.id,
                age,
                money(r.cost_usd),
                item.reason,
                r.state,
                r.run_id or "",
                key=row_key(item.key),
            )
        log = self.query_one("#log", RichLog)
        for backend, why in plan.listing.unlisted.items():
            log.write(Text(f"could not list {backend}: {why}", style="bold red"))
        for note in plan.listing.notes:
            log.write(f"note: {note}")
        self._update_title()

    def _mark(self, key: tuple[str, str, str]) -> Text:
        return Text("[x]", style="bold") if key in self.selected else Text("[ ]", style="dim")

    def _update_title(self) -> None:
        if self.plan is None:
            return
        chosen = self.plan.subset(self.selected)
        removable = len([i for i in chosen.items if i.action == DESTROY])
        self.sub_title = (
            f"{self.scope}: {removable} to remove, {len(chosen.cancel_job_ids)} job(s) to cancel, "
            f"{len(self.plan.kept)} kept; cost so far {money(chosen.cost_usd)}"
        )

    # -- selection -----------------------------------------------------------------------------

    def _plan_keys(self) -> list[tuple[str, str, str]]:
        return [i.key for i in self.plan.items] if self.plan else []

    def action_toggle(self) -> None:
        table = self.query_one("#plan", DataTable)
        if self.plan is None or table.row_count == 0:
            return
        current = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        key = next((k for k in self._plan_keys() if row_key(k) == current), None)
        if key is None:
            self.notify("kept resources belong to a run that is still driven", severity="warning")
            return
        self.selected ^= {key}
        table.update_cell(current, "mark", self._mark(key))
        self._update_title()

    def action_toggle_all(self) -> None:
        keys = self._plan_keys()
        self.selected = set() if self.selected >= set(keys) else set(keys)
        table = self.query_one("#plan", DataTable)
        for key in keys:
            table.update_cell(row_key(key), "mark", self._mark(key))
        self._update_title()

    # -- executing -----------------------------------------------------------------------------

    def action_execute(self) -> None:
        if self.app.readonly or self.busy or self.plan is None:
            return
        chosen = self.plan.subset(self.selected)
        if not chosen.actionable:
            self.notify("nothing selected", severity="warning")
            return
        runs = {i.resource.run_id for i in chosen.items} | {
            self.app.ledger.get_job(j).run_id for j in chosen.cancel_job_ids
        }
        word = runs.pop() if len(runs) == 1 and None not in runs else "yes"
        count = len([i for i in chosen.items if i.action == DESTROY])
        question = (
            f"Remove {count} resource(s) and cancel {len(chosen.cancel_job_ids)} job(s)? "
            f"Cost so far {money(chosen.cost_usd)}. This cannot be undone."
        )

        def answer(ok: bool | None) -> None:
            if ok:
                self.busy = True
                self.query_one("#log", RichLog).write(Text(f"tearing down ({self.scope})…", style="bold"))
                self._execute(chosen)

        self.app.push_screen(ConfirmScreen(question, "Tear down", typed=word), answer)

    @work(thread=True, exclusive=True, group="teardown-execute", exit_on_error=False)
    def _execute(self, plan: Plan) -> None:
        try:
            result = execute(
                self.app.settings,
                self.app.ledger,
                plan,
                on_progress=lambda line: self.post_message(TeardownProgress(line)),
            )
        finally:
            self.app.call_from_thread(setattr, self, "busy", False)
        self.post_message(TeardownDone(result))

    def on_teardown_progress(self, message: TeardownProgress) -> None:
        self.query_one("#log", RichLog).write(message.line)

    def on_teardown_done(self, message: TeardownDone) -> None:
        result = message.result
        log = self.query_one("#log", RichLog)
        for item, error in result.failed:
            log.write(Text(f"failed: {item.resource.kind} {item.resource.id}: {error}", style="red"))
        for resource in result.left:
            log.write(Text(f"still there: {resource.kind} {resource.id} ({resource.state})", style="bold red"))
        if result.clean:
            self.notify(f"removed {len(result.destroyed)}; nothing is left", title="Teardown")
        else:
            self.notify(
                "something is left: see the log below, then refresh and try again",
                title="Teardown",
                severity="error",
                timeout=15,
            )
        self.action_refresh()
