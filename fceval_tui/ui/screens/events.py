"""What the runner did and why (state changes, retries, capacity waits, errors), newest first."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Footer, Header

from fceval_tui.domain.models import Event, Job
from fceval_tui.ledger import Ledger
from fceval_tui.presentation import describe_event
from fceval_tui.ui.messages import EventsLoaded
from fceval_tui.ui.polling import PollingScreen

KEEP = 2000
NOISY = {"job_created"}
# (key, label, width): the job id keeps its number within the run; "who" and "what" share the rest.
FIXED = (("id", "#", 6), ("time", "time", 8), ("job", "job", 15))
MIN_WHO, MAX_WHO = 20, 36
SCROLLBAR = 2


def who(job: Job | None) -> Text:
    """Agent and task of the job an event is about (blank for run-wide events)."""
    if job is None:
        return Text("")
    return Text.assemble((job.agent, "dim"), " ", job.task_id)


def who_width(screen_width: int) -> int:
    """Two fifths of what the fixed columns leave (each column has one cell of padding on both sides)."""
    rest = screen_width - SCROLLBAR - sum(width + 2 for *_, width in FIXED) - 2 * 2
    return max(MIN_WHO, min(MAX_WHO, rest * 2 // 5))


def jobs_named(ledger: Ledger, events: Iterable[Event], known: frozenset[str]) -> dict[str, Job]:
    """The jobs that `events` are about and that are not in `known`, read one run at a time."""
    wanted: dict[str, set[str]] = {}
    for event in events:
        if event.job_id and event.job_id not in known:
            wanted.setdefault(event.run_id, set()).add(event.job_id)
    return {job.id: job for run_id, ids in wanted.items() for job in ledger.jobs(run_id=run_id) if job.id in ids}


class EventsScreen(PollingScreen):
    poll_interval = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._after = 0
        self._jobs: dict[str, Job] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(cursor_type="row", zebra_stripes=True, id="events")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in FIXED:
            table.add_column(label, key=key, width=width)
        table.add_column("agent / task", key="who", width=who_width(self.app.size.width))
        table.add_column("what", key="what")
        self.sub_title = "events, newest first"

    def start_poll(self) -> None:
        self._load(self._after, frozenset(self._jobs))

    @work(thread=True, exclusive=True, group="events-poll", exit_on_error=False)
    def _load(self, after: int, known: frozenset[str]) -> None:
        ledger = self.app.ledger
        events = ledger.events(newest_first=True, limit=KEEP)[::-1] if after == 0 else ledger.events(after=after)
        self.post_message(EventsLoaded(events, jobs_named(ledger, events, known)))

    def on_events_loaded(self, message: EventsLoaded) -> None:
        self._jobs.update(message.jobs)
        table = self.query_one(DataTable)
        for event in message.events:
            self._after = max(self._after, event.id)
            if event.kind in NOISY:
                continue
            table.add_row(
                event.id,
                event.ts.astimezone().strftime("%H:%M:%S"),
                event.job_id or event.run_id,
                who(self._jobs.get(event.job_id or "")),
                describe_event(event),
                key=str(event.id),
            )
        if message.events:
            table.sort("id", reverse=True)  # DataTable appends; newest first needs a sort
        self.poll_done()
