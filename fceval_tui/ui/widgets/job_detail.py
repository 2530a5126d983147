"""The panel beside the jobs table: the selected job's fields, timeline, artifacts and last output."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from fceval_tui.domain.models import Event, Job
from fceval_tui.presentation import STATE_ICON, STATE_STYLE, money


class JobDetail(Static):
    DEFAULT_CSS = """
    JobDetail { padding: 0 1; }
    """

    _shown: tuple | None = None

    @property
    def job(self) -> Job | None:
        """The job on show (None: none yet)."""
        return self._shown[0] if self._shown else None

    def show(self, job: Job | None, events: list[Event] | None = None, output: list[Text] | None = None) -> None:
        key = (job, tuple(e.id for e in events or ()), tuple(output or ()))
        if key == self._shown:
            return  # an update re-lays out the screen: skip it when nothing changed
        self._shown = key
        if job is None:
            self.update(Text("No job selected. Launch some with n, or run `fceval-tui demo`.", style="dim"))
            return
        state = job.state.value
        head = Table.grid(padding=(0, 1))
        head.add_column(style="bold", no_wrap=True)
        head.add_column()
        head.add_row("job", job.id)
        head.add_row("state", Text(f"{STATE_ICON[state]} {state}", style=STATE_STYLE[state]))
        # User data goes in as Text, never markup: "[/x]" is a valid task id.
        head.add_row("agent / task", Text(f"{job.agent} / {job.task_id}"))
        if job.model:
            head.add_row("model", Text(job.model))
        head.add_row("attempts", str(job.attempts))
        head.add_row("exit code", "" if job.exit_code is None else str(job.exit_code))
        head.add_row("resource", job.resource_id or "")
        head.add_row("cost", money(job.cost_usd))
        if job.error:
            head.add_row("error", Text(job.error, style="red"))
        for path in job.artifacts:
            head.add_row("artifact", Text(path, overflow="fold"))
        parts: list = [head]
        if events:
            timeline = Table.grid(padding=(0, 1))
            timeline.add_column(style="dim", no_wrap=True)
            timeline.add_column()
            for event in events:
                label = event.to_state or event.kind
                reason = event.detail.get("reason") or event.detail.get("error") or ""
                style = STATE_STYLE.get(event.to_state or "", "")
                timeline.add_row(event.ts.strftime("%H:%M:%S"), Text(f"{label} {reason}".strip(), style=style))
            parts += [Text("\ntimeline", style="bold"), timeline]
        if output:
            parts += [Text("\nlast output", style="bold"), Text("\n").join(output)]
        self.update(Group(*parts))
