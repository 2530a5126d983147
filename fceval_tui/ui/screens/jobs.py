"""The jobs view: progress per run, the jobs table with filter and sort, the selected job's detail."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Input

from fceval_tui.backends.base import work_dir
from fceval_tui.backends.local import console_tail
from fceval_tui.domain.models import Job
from fceval_tui.domain.triage import retryable
from fceval_tui.ui import filters
from fceval_tui.ui.messages import JobDetailLoaded, JobsLoaded
from fceval_tui.ui.polling import PollingScreen
from fceval_tui.ui.terminal_text import as_shown
from fceval_tui.ui.widgets.job_detail import JobDetail
from fceval_tui.ui.widgets.jobs_table import COLUMNS, JobsTable
from fceval_tui.ui.widgets.run_progress import RunProgress

OUTPUT_LINES = 12
DETAIL_DELAY = 0.08
SORTABLE = [column.key for column in COLUMNS]


class JobsScreen(PollingScreen):
    DEFAULT_CSS = """
    JobsScreen #filter { display: none; margin: 0 1; }
    JobsScreen #filter.visible { display: block; }
    JobsScreen #body { height: 1fr; }
    JobsScreen JobsTable { width: 1fr; }
    JobsScreen #detail-scroll { width: 44; border-left: solid $panel; }
    JobsScreen #detail-scroll.hidden { display: none; }
    """
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="jobs.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="jobs.clear_filter"),
        Binding("s", "sort", "Sort", id="jobs.sort"),
        Binding("S", "reverse_sort", "Reverse", show=False, id="jobs.reverse_sort"),
        Binding("a", "attach", "Attach", id="jobs.attach"),
        Binding("c", "cancel_job", "Cancel", id="jobs.cancel"),
        Binding("C", "cancel_run", "Cancel run", show=False, id="jobs.cancel_run"),
        Binding("r", "retry_job", "Retry", id="jobs.retry"),
        Binding("R", "retry_failed", "Retry this error class", show=False, id="jobs.retry_failed"),
        Binding("y", "copy_id", "Copy id", id="jobs.copy_id"),
        Binding("d", "toggle_detail", "Detail", id="jobs.toggle_detail"),
    ]
    # Below this width the detail panel starts hidden so that every table column fits.
    DETAIL_MIN_WIDTH = 150

    def __init__(self) -> None:
        super().__init__()
        self._cursor = 0
        self._detail_timer = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield RunProgress(id="runs")
        yield Input(
            placeholder="filter: state:failed agent:aide task:x !state:succeeded  (enter applies, esc clears)",
            id="filter",
            disabled=True,
            compact=True,
        )
        with Horizontal(id="body"):
            yield JobsTable(clock=self.app.clock, id="jobs")
            with VerticalScroll(id="detail-scroll"):
                yield JobDetail(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(JobDetail).show(None)
        self.query_one("#detail-scroll").set_class(self.app.size.width < self.DETAIL_MIN_WIDTH, "hidden")
        self.table.focus()
        self.set_interval(1.0, self.query_one(JobsTable).tick)

    @property
    def table(self) -> JobsTable:
        return self.query_one(JobsTable)

    # -- polling --------------------------------------------------------------------------------

    def start_poll(self) -> None:
        self._load(self._cursor)

    @work(thread=True, exclusive=True, group="jobs-poll", exit_on_error=False)
    def _load(self, cursor: int) -> None:
        ledger = self.app.ledger
        jobs, new_cursor = ledger.jobs_changed_since(cursor)
        self.post_message(JobsLoaded(jobs, new_cursor, ledger.run_summaries()))

    def on_jobs_loaded(self, message: JobsLoaded) -> None:
        self._cursor = message.cursor
        self.query_one(RunProgress).show(message.summaries)
        if message.jobs:
            self.table.apply(message.jobs)
        selected = self.table.selected
        # Its timeline and output are still growing; while the cursor moves, the detail waits for it to rest.
        growing = selected is not None and (
            not selected.state.is_final or any(j.id == selected.id for j in message.jobs)
        )
        if growing and self._detail_timer is None:
            self._load_detail(selected)
        self.sub_title = self._subtitle()
        self.poll_done()

    def _subtitle(self) -> str:
        table = self.table
        shown = f"{table.row_count} of {len(table.jobs)} jobs" if table.job_filter.active else f"{len(table.jobs)} jobs"
        flt = f"  filter: {table.job_filter.text}" if table.job_filter.active else ""
        readonly = "  READ-ONLY" if self.app.readonly else ""
        return f"{shown}  sort: {table.sort_column}{' ↓' if table.sort_reverse else ''}{flt}{readonly}"

    # -- detail ---------------------------------------------------------------------------------

    def on_jobs_table_job_highlighted(self, message: JobsTable.JobHighlighted) -> None:
        # Holding a key down moves the cursor many rows a second: load the detail once it rests
        # (showing it re-lays out the screen, which would slow the keys down).
        if self._detail_timer is not None:
            self._detail_timer.stop()
            self._detail_timer = None
        job = message.job
        if job is None:
            self.query_one(JobDetail).show(None)
            return
        self._detail_timer = self.set_timer(DETAIL_DELAY, lambda: self._rested(job))

    def _rested(self, job: Job) -> None:
        self._detail_timer = None
        self._load_detail(job)

    def _load_detail(self, job: Job) -> None:
        if not self.query_one("#detail-scroll").has_class("hidden"):
            self._read_detail(job)

    @work(thread=True, exclusive=True, group="jobs-detail", exit_on_error=False)
    def _read_detail(self, job: Job) -> None:
        events = [e for e in self.app.ledger.events(job_id=job.id) if e.kind != "job_created"]
        # This machine's copy of the pane output (local jobs); cloud logs are read on attach, not per poll.
        output = [as_shown(line) for line in console_tail(work_dir(self.app.settings, job), OUTPUT_LINES)]
        self.post_message(JobDetailLoaded(job, events, output))

    def on_job_detail_loaded(self, message: JobDetailLoaded) -> None:
        selected = self.table.selected
        if selected is not None and selected.id == message.job.id:
            self.query_one(JobDetail).show(selected, message.events, message.output)

    # -- filter and sort ------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.disabled = False
        box.add_class("visible")
        box.focus()

    @on(Input.Submitted, "#filter")
    def _apply_filter(self, event: Input.Submitted) -> None:
        try:
            job_filter = filters.parse(event.value)
        except filters.FilterError as exc:
            self.notify(str(exc), title="Filter", severity="error")
            return
        self.table.set_filter(job_filter)
        if not job_filter.active:
            event.input.remove_class("visible")
            event.input.disabled = True
        self.table.focus()
        self.sub_title = self._subtitle()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("visible")
        box.disabled = True
        self.table.set_filter(filters.JobFilter())
        self.table.focus()
        self.sub_title = self._subtitle()

    def action_sort(self) -> None:
        current = SORTABLE.index(self.table.sort_column)
        self.table.sort_by(SORTABLE[(current + 1) % len(SORTABLE)], reverse=False)
        self.sub_title = self._subtitle()

    def action_reverse_sort(self) -> None:
        self.table.sort_by(self.table.sort_column)
        self.sub_title = self._subtitle()

    # -- actions on jobs --------------------------------------------------------------------------

    def on_jobs_table_job_selected(self, event: JobsTable.JobSelected) -> None:
        # Enter (or a double click) on a row attaches, like k9s' enter-to-drill-down.
        event.stop()
        self.app.open_attach(event.job)

    def action_attach(self) -> None:
        job = self.table.selected
        if job is not None:
            self.app.open_attach(job)

    def action_toggle_detail(self) -> None:
        self.query_one("#detail-scroll").toggle_class("hidden")
        job, detail = self.table.selected, self.query_one(JobDetail)
        if job is not None:
            # While hidden, the panel loaded nothing: show the highlighted job now, its timeline once read.
            if detail.job is None or detail.job.id != job.id:
                detail.show(job)
            self._load_detail(job)

    def action_copy_id(self) -> None:
        job = self.table.selected
        if job is not None:
            self.app.copy_to_clipboard(job.id)
            self.notify(f"copied {job.id}")

    def action_cancel_job(self) -> None:
        job = self.table.selected
        if job is not None and not job.state.is_final:
            self.app.confirm_cancel([job.id], f"Cancel job {job.id} ({job.agent} / {job.task_id})?")

    def action_cancel_run(self) -> None:
        job = self.table.selected
        if job is None:
            return
        active = [j.id for j in self.table.jobs.values() if j.run_id == job.run_id and not j.state.is_final]
        if active:
            self.app.confirm_cancel(active, f"Cancel {len(active)} unfinished job(s) of run {job.run_id}?")

    def action_retry_job(self) -> None:
        job = self.table.selected
        if job is not None:
            self.app.retry([job])

    def action_retry_failed(self) -> None:
        """Retry the run's unsuccessful jobs that ended like the highlighted one (its error class),
        or all of them when the highlighted job has none."""
        job = self.table.selected
        if job is not None:
            same_run = [j for j in self.table.jobs.values() if j.run_id == job.run_id]
            self.app.retry(retryable(same_run, job.error_class))

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return not (self.app.readonly and action in ("cancel_job", "cancel_run", "retry_job", "retry_failed"))
