"""Warm pools: one row per live instance with its jobs, idle time, expiry and cost so far.

The view refreshes from the ledger alone; ctrl+r also checks the instances with EC2 and SSM (gone ones
marked, unhealthy ones drained), u brings a pool up (a form: name, size, instance type, TTL), and D ends
the highlighted pool after a confirmation. The console's pool keeper (services/pool_keeper) replaces
unhealthy instances and ends idle ones in the background: their rows say so.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from fceval_tui.presentation import duration, money
from fceval_tui.services.pool_view import pool_statuses
from fceval_tui.ui.messages import PoolsLoaded
from fceval_tui.ui.polling import PollingScreen
from fceval_tui.ui.screens.modals import ConfirmScreen
from fceval_tui.ui.screens.pool_up import PoolUpRequest, PoolUpScreen

COLUMNS = (
    ("pool", "Pool"),
    ("id", "Instance"),
    ("state", "State"),
    ("slots", "Slots"),
    ("jobs", "Jobs"),
    ("idle", "Idle"),
    ("expires", "Ends at"),
    ("cost", "Cost so far"),
    ("note", "Note"),
)
STATE_STYLE = {"ready": "green", "booting": "yellow", "draining": "bold red"}


class PoolsScreen(PollingScreen):
    poll_interval = 2.0
    BINDINGS = [
        Binding("ctrl+r", "check", "Check with AWS", id="pools.check"),
        Binding("u", "up", "Pool up", id="pools.up"),
        Binding("D", "down", "Pool down", id="pools.down"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row", zebra_stripes=True, id="pools")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return not (action in ("up", "down") and self.app.readonly)

    def start_poll(self) -> None:
        self._load(check=False)

    def action_check(self) -> None:
        self._load(check=True)

    @work(thread=True, exclusive=True, group="pools-poll", exit_on_error=False)
    def _load(self, check: bool) -> None:
        app = self.app
        if check:
            from fceval_tui.services.pool import pool_status

            pool_status(app.settings, app.ledger)
        self.post_message(PoolsLoaded(pool_statuses(app.settings, app.ledger)))

    def on_pools_loaded(self, message: PoolsLoaded) -> None:
        table = self.query_one(DataTable)
        seen = set()
        for status in message.statuses:
            for row in status.rows:
                i = row.instance
                seen.add(i.id)
                cells = (
                    status.pool.name,
                    i.id,
                    Text(i.state, style=STATE_STYLE.get(i.state, "")),
                    str(i.slots),
                    ", ".join(i.jobs),
                    "" if row.idle_seconds is None else duration(row.idle_seconds),
                    i.expires_at.strftime("%H:%M UTC") if i.expires_at else "",
                    money(row.cost_usd),
                    i.note or "",
                )
                if i.id in table.rows:
                    for (key, _), value in zip(COLUMNS, cells, strict=True):
                        table.update_cell(i.id, key, value)
                else:
                    table.add_row(*cells, key=i.id)
        for key in [k.value for k in table.rows if k.value not in seen]:
            table.remove_row(key)
        up = [s for s in message.statuses if s.pool.up]
        self.sub_title = (
            f"{len(up)} pool(s) up, {sum(s.ready for s in up)} instance(s) ready, "
            f"{sum(s.busy for s in up)}/{sum(s.slots for s in up)} slots busy"
            if message.statuses
            else "no pools: press u to start one (or `fceval-tui pool up --size N`)"
        )
        self.poll_done()

    def action_up(self) -> None:
        if self.app.readonly:
            return

        def answer(request: PoolUpRequest | None) -> None:
            if request is not None:
                self._up(request)

        self.app.push_screen(PoolUpScreen(self.app.settings), answer)

    @work(thread=True, group="pools-up", exit_on_error=False)
    def _up(self, request: PoolUpRequest) -> None:
        from fceval_tui.services.pool import pool_up

        def progress(message: str) -> None:
            self.app.call_from_thread(self.notify, message, title="Pools")

        status = pool_up(
            self.app.settings,
            self.app.ledger,
            request.name,
            request.size,
            request.instance_type or None,
            request.ttl or None,
            on_progress=progress,
        )
        self.app.call_from_thread(
            self.notify, f"pool {request.name}: {status.ready} instance(s) ready, {status.slots} slot(s)", title="Pools"
        )
        self.app.call_from_thread(self.poll_now)

    def action_down(self) -> None:
        table = self.query_one(DataTable)
        if self.app.readonly or not table.row_count:
            return
        name = str(table.get_row_at(table.cursor_row)[0])

        def answer(ok: bool | None) -> None:
            if ok:
                self._down(name)

        question = f"End every instance of pool {name}? Jobs on it are cancelled; this waits until they are terminated."
        self.app.push_screen(ConfirmScreen(question, "Pool down"), answer)

    @work(thread=True, group="pools-down", exit_on_error=False)
    def _down(self, name: str) -> None:
        from fceval_tui.services.pool import pool_down

        ended = pool_down(self.app.settings, self.app.ledger, name)
        self.app.call_from_thread(self.notify, f"pool {name}: ended {len(ended)} instance(s)", title="Pools")
        self.app.call_from_thread(self.poll_now)
