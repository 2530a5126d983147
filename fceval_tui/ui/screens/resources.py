"""The live compute behind jobs, per backend, with an orphan marker for what the ledger does not know."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from fceval_tui.presentation import duration, money, pool_note
from fceval_tui.ui.messages import ResourcesLoaded
from fceval_tui.ui.polling import PollingScreen


class ResourcesScreen(PollingScreen):
    poll_interval = 3.0
    BINDINGS = [Binding("ctrl+r", "refresh", "Refresh", id="resources.refresh")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row", zebra_stripes=True, id="resources")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in (
            ("backend", "Backend"),
            ("kind", "Kind"),
            ("id", "Resource"),
            ("state", "State"),
            ("job", "Job"),
            ("uptime", "Uptime"),
            ("cost", "Cost so far"),
            ("orphan", "Orphan"),
        ):
            table.add_column(label, key=key)

    def action_refresh(self) -> None:
        self.poll_now()

    def start_poll(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="resources-poll", exit_on_error=False)
    def _load(self) -> None:
        self.post_message(ResourcesLoaded(*self.app.resource_listing()))

    def on_resources_loaded(self, message: ResourcesLoaded) -> None:
        table = self.query_one(DataTable)
        now = self.app.clock()
        seen = set()
        for r in message.resources:
            key = f"{r.backend}:{r.id}"
            seen.add(key)
            uptime = duration((now - r.started_at).total_seconds()) if r.started_at else ""
            reason = message.orphans.get(r.id)
            orphan = Text(f"ORPHAN: {reason}", style="bold red") if reason else Text("")
            job = pool_note(message.pools.get(r.id)) or r.job_id or ""
            cells = (r.backend, r.kind, r.id, r.state, job, uptime, money(r.cost_usd), orphan)
            if key in table.rows:
                for column, value in zip(
                    ("backend", "kind", "id", "state", "job", "uptime", "cost", "orphan"), cells, strict=True
                ):
                    table.update_cell(key, column, value)
            else:
                table.add_row(*cells, key=key)
        for key in [k.value for k in table.rows if k.value not in seen]:
            table.remove_row(key)
        count = len(message.resources)
        self.sub_title = f"{count} live resource(s), {len(message.orphans)} orphan(s)"
        for error in message.errors:
            self.notify(error, title="Resources", severity="warning")
        self.poll_done()
