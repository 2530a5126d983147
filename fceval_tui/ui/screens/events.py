"""What the runner did and why (state changes, retries, capacity waits, errors), newest first."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Header

from fceval_tui.domain.models import Event
from fceval_tui.presentation import STATE_STYLE
from fceval_tui.ui.messages import EventsLoaded
from fceval_tui.ui.polling import PollingScreen

KEEP = 2000
NOISY = {"job_created"}


def describe(event: Event) -> Text:
    detail = event.detail
    if event.kind == "state":
        text = Text(f"{event.from_state} → ", style="dim")
        text.append(event.to_state or "", style=STATE_STYLE.get(event.to_state or "", ""))
        why = detail.get("reason") or detail.get("error")
        if why:
            text.append(f"  {why}")
        return text
    parts = " ".join(f"{k}={v}" for k, v in detail.items())
    style = "red" if "fail" in event.kind or "error" in detail else "yellow" if "retry" in event.kind else ""
    return Text(f"{event.kind}  {parts}".strip(), style=style)


class EventsScreen(PollingScreen):
    poll_interval = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._after = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row", zebra_stripes=True, id="events")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("#", key="id", width=6)
        table.add_column("time", key="time", width=8)
        table.add_column("run", key="run", width=10)
        table.add_column("job", key="job", width=14)
        table.add_column("what", key="what")
        self.sub_title = "events, newest first"

    def start_poll(self) -> None:
        self._load(self._after)

    @work(thread=True, exclusive=True, group="events-poll", exit_on_error=False)
    def _load(self, after: int) -> None:
        if after == 0:
            events = self.app.store.events(newest_first=True, limit=KEEP)[::-1]
        else:
            events = self.app.store.events(after=after)
        self.post_message(EventsLoaded(events))

    def on_events_loaded(self, message: EventsLoaded) -> None:
        table = self.query_one(DataTable)
        for event in message.events:
            self._after = max(self._after, event.id)
            if event.kind in NOISY:
                continue
            table.add_row(
                event.id,
                event.ts.astimezone().strftime("%H:%M:%S"),
                event.run_id,
                event.job_id or "",
                describe(event),
                key=str(event.id),
            )
        if message.events:
            table.sort("id", reverse=True)  # DataTable appends; newest first needs a sort
        self.poll_done()
