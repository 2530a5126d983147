"""The jobs table: rows change in place (changed cells only), never a rebuild of the whole table."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from fceval_tui.domain.models import Job, utcnow
from fceval_tui.presentation import STATE_ICON, STATE_STYLE, elapsed, money
from fceval_tui.ui.filters import JobFilter

COLUMNS = (
    ("id", "Job", 13),
    ("agent", "Agent", 8),
    ("task", "Task", 24),
    ("model", "Model", 10),
    ("backend", "Backend", 7),
    ("state", "State", 18),
    ("attempts", "Att", 3),
    ("elapsed", "Elapsed", 7),
    ("cost", "Cost", 7),
)
SORT_KEYS: dict[str, Callable[[Job], object]] = {
    "id": lambda j: (j.run_id, j.seq),
    "agent": lambda j: j.agent,
    "task": lambda j: j.task_id,
    "model": lambda j: j.model,
    "backend": lambda j: j.backend,
    "state": lambda j: j.state.value,
    "attempts": lambda j: j.attempts,
    "elapsed": lambda j: j.started_at.timestamp() if j.started_at else 0,
    "cost": lambda j: j.cost_usd,
}


def _cells(job: Job, now: datetime) -> dict[str, object]:
    state = job.state.value
    return {
        "id": job.id,
        "agent": job.agent,
        "task": job.task_id,
        "model": job.model,
        "backend": job.backend,
        "state": Text(f"{STATE_ICON[state]} {state}", style=STATE_STYLE[state]),
        "attempts": str(job.attempts),
        "elapsed": elapsed(job, now),
        "cost": money(job.cost_usd),
    }


class JobsTable(DataTable):
    """Holds every known job; shows those passing the filter, in the chosen order."""

    class JobHighlighted(Message):
        def __init__(self, job: Job | None) -> None:
            super().__init__()
            self.job = job

    def __init__(self, clock: Callable[[], datetime] = utcnow, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.clock = clock
        self.jobs: dict[str, Job] = {}
        self._shown: dict[str, dict[str, object]] = {}
        self.job_filter = JobFilter()
        self.sort_column = "id"
        self.sort_reverse = False

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    @property
    def selected(self) -> Job | None:
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return self.jobs.get(row_key.value)

    def apply(self, jobs: Iterable[Job]) -> int:
        """Merge changed jobs; update only the cells that differ. Returns the number of rows touched."""
        now = self.clock()
        touched = added = 0
        for job in jobs:
            self.jobs[job.id] = job
            visible = self.job_filter(job)
            if job.id in self._shown:
                if not visible:
                    self._remove(job.id)
                    touched += 1
                    continue
                touched += self._update(job, now)
            elif visible:
                cells = _cells(job, now)
                self.add_row(*cells.values(), key=job.id)
                self._shown[job.id] = cells
                added += 1
        if added:
            self._sort()
        if touched or added:
            self._announce()
        return touched + added

    def tick(self) -> None:
        """Refresh the elapsed column of active jobs (the only cells that change with time)."""
        now = self.clock()
        for job_id, cells in self._shown.items():
            job = self.jobs[job_id]
            if job.started_at and not job.state.is_final:
                value = elapsed(job, now)
                if cells["elapsed"] != value:
                    cells["elapsed"] = value
                    self.update_cell(job_id, "elapsed", value)

    def set_filter(self, job_filter: JobFilter) -> None:
        self.job_filter = job_filter
        for job_id in [j for j in self._shown if not job_filter(self.jobs[j])]:
            self._remove(job_id)
        now = self.clock()
        for job in self.jobs.values():
            if job.id not in self._shown and job_filter(job):
                cells = _cells(job, now)
                self.add_row(*cells.values(), key=job.id)
                self._shown[job.id] = cells
        self._sort()
        self._announce()

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        if column == self.sort_column and reverse is None:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column = column
            self.sort_reverse = bool(reverse)
        self._sort()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(event.column_key.value)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()

    def _sort(self) -> None:
        key = SORT_KEYS[self.sort_column]
        jobs = self.jobs
        self.sort("id", key=lambda job_id: key(jobs[job_id]), reverse=self.sort_reverse)

    def _update(self, job: Job, now: datetime) -> int:
        old = self._shown[job.id]
        new = _cells(job, now)
        changed = [k for k, v in new.items() if old.get(k) != v]
        for column in changed:
            self.update_cell(job.id, column, new[column])
        self._shown[job.id] = new
        return 1 if changed else 0

    def _remove(self, job_id: str) -> None:
        self.remove_row(job_id)
        del self._shown[job_id]

    def _announce(self) -> None:
        self.post_message(self.JobHighlighted(self.selected))
