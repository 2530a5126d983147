"""Acting on the machines behind jobs: one command on a selection of jobs (exec), and port forwards.

The selection is what the jobs view shows: the rows its filter keeps, or, without a filter, the
highlighted job's run. Both screens do their AWS work in thread workers and take results as messages.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from fceval_tui.domain.models import Job
from fceval_tui.presentation import render_exec
from fceval_tui.ui.messages import ExecFinished, ExecProgress, ForwardOpened
from fceval_tui.ui.screens.jobs import JobsScreen
from fceval_tui.ui.screens.modals import ConfirmScreen
from fceval_tui.ui.workers import ReportWorkerErrors

_MODAL_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 110; height: 80%; border: thick $accent; background: $surface; padding: 0 1; }}
{name} Input {{ margin: 1 0; }}
"""


def _jobs_screen(app) -> JobsScreen | None:
    return next((s for s in app.get_screen_stack("jobs") if isinstance(s, JobsScreen) and s.is_mounted), None)


def job_selection(jobs_screen: JobsScreen) -> tuple[list[Job], str]:
    """The jobs an action on "the selection" means, and how to name them."""
    table = jobs_screen.table
    if table.job_filter.active:
        jobs = [table.jobs[i] for i in table.visible_ids]
        return jobs, f"the {len(jobs)} jobs matching `{table.job_filter.text}`"
    job = table.selected
    if job is None:
        return [], ""
    return [j for j in table.jobs.values() if j.run_id == job.run_id], f"run {job.run_id}"


def open_exec(app) -> None:
    screen = _jobs_screen(app)
    jobs, scope = job_selection(screen) if screen is not None else ([], "")
    if jobs:
        app.push_screen(ExecScreen(jobs, scope))
    else:
        app.notify("no jobs selected: highlight a job (its run) or filter the jobs view first", severity="warning")


def open_forwards(app) -> None:
    screen = _jobs_screen(app)
    app.push_screen(ForwardsScreen(screen.table.selected if screen is not None else None))


class ExecScreen(ReportWorkerErrors, ModalScreen[None]):
    """Type a shell command; it runs on every machine of the selection; the answers come back grouped."""

    DEFAULT_CSS = _MODAL_CSS.format(name="ExecScreen")
    BINDINGS = [Binding("escape", "dismiss", "Back", id="exec.back")]

    def __init__(self, jobs: list[Job], scope: str) -> None:
        super().__init__()
        self.jobs = jobs
        self.scope = scope
        self.running = False
        self.report = None  # the last command's ExecReport

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(f"Run a shell command on the machines of {self.scope} ({len(self.jobs)} jobs)"))
            yield Input(placeholder="shell command, e.g. df -h / | tail -1   (as root, after a confirm)", id="command")
            with VerticalScroll():
                yield Static(id="progress")
                yield Static(id="result")

    @on(Input.Submitted, "#command")
    def _submitted(self, event: Input.Submitted) -> None:
        command = event.value.strip()
        if not command or self.running:
            return
        question = f"Run as root on the machines of {len(self.jobs)} jobs ({self.scope})?\n\n  {command}"
        self.app.push_screen(ConfirmScreen(question, "Run"), lambda yes: self._start(command) if yes else None)

    def _start(self, command: str) -> None:
        self.running = True
        self.query_one("#command", Input).disabled = True
        self._progress: list[Text] = []
        self.query_one("#progress", Static).update(Text(f"running on {self.scope} …", style="dim"))
        self._run(command)

    @work(thread=True, exclusive=True, group="exec", exit_on_error=False)
    def _run(self, command: str) -> None:
        from fceval_tui.services.fleet_exec import run_on_fleet
        from fceval_tui.services.fleet_targets import select_jobs
        from fceval_tui.services.operator import STS_WAIT, identity, record_exec

        app = self.app
        try:
            selection = select_jobs(app.ledger, job_ids=[j.id for j in self.jobs], scope=self.scope)
            report = run_on_fleet(
                app.settings, selection, command, progress=lambda result: self.post_message(ExecProgress(result))
            )
        finally:
            self.app.call_from_thread(self._done)
        record_exec(app.ledger, selection, command, report.results, report.command_ids, by=identity(STS_WAIT))
        self.post_message(ExecFinished(report))

    def _done(self) -> None:
        self.running = False
        if self.is_mounted:
            self.query_one("#command", Input).disabled = False

    def on_exec_progress(self, message: ExecProgress) -> None:
        result = message.result
        line = Text("✓ " if result.ok else "✗ ", style="green" if result.ok else "red")
        line.append(f"{result.machine.short}  {result.label}")
        self._progress.append(line)
        self.query_one("#progress", Static).update(Text("\n").join(self._progress[-8:]))

    def on_exec_finished(self, message: ExecFinished) -> None:
        self.report = message.report
        self.query_one("#result", Static).update(render_exec(message.report))


class ForwardsScreen(ReportWorkerErrors, ModalScreen[None]):
    """The console's open port forwards; type a port to forward one of the highlighted job's, `x` closes."""

    DEFAULT_CSS = _MODAL_CSS.format(name="ForwardsScreen")
    BINDINGS = [
        Binding("escape", "dismiss", "Back", id="forwards.back"),
        Binding("x", "close_forward", "Close forward", id="forwards.close"),
    ]

    def __init__(self, job: Job | None) -> None:
        super().__init__()
        self.job = job

    def compose(self) -> ComposeResult:
        with Vertical():
            if self.job is not None and not self.app.readonly:
                yield Label(
                    Text(f"Forward a port of job {self.job.id} ({self.job.backend} {self.job.resource_id or ''})")
                )
                yield Input(placeholder="REMOTE_PORT or REMOTE_PORT:LOCAL_PORT, then enter", id="port")
            yield Label(Text("Open forwards (x closes the highlighted one; all close when the console exits)"))
            yield DataTable(cursor_type="row", id="forwards")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in (("id", "#"), ("job", "Job"), ("url", "Local"), ("target", "Target"), ("state", "State")):
            table.add_column(label, key=key)
        self._show()
        self.set_interval(2.0, self._show)

    def _show(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for f in self.app.forwards.list():
            state = Text("open", style="green") if f.alive else Text("ended", style="red")
            table.add_row(str(f.id), f.job_id, f.url, f"{f.target} port {f.remote_port}", state, key=str(f.id))

    @on(Input.Submitted, "#port")
    def _submitted(self, event: Input.Submitted) -> None:
        remote, _, local = event.value.strip().partition(":")
        if not remote.isdigit() or (local and not local.isdigit()):
            self.notify("give REMOTE_PORT or REMOTE_PORT:LOCAL_PORT, e.g. 8888 or 8888:9000", severity="warning")
            return
        event.input.value = ""
        self._open(int(remote), int(local) if local else None)

    @work(thread=True, group="forward-open", exit_on_error=False)
    def _open(self, remote: int, local: int | None) -> None:
        self.post_message(ForwardOpened(self.app.forwards.open(self.job.id, remote, local)))

    def on_forward_opened(self, message: ForwardOpened) -> None:
        self.notify(f"{message.forward.url} -> {message.forward.target} port {message.forward.remote_port}")
        self._show()

    def action_close_forward(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            self._close(int(key))

    @work(thread=True, group="forward-close", exit_on_error=False)
    def _close(self, forward_id: int) -> None:
        self.app.forwards.close(forward_id, "closed in the console")
        self.app.call_from_thread(self._show)
