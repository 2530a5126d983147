"""The jobs table: a Line-API view that renders only the rows on screen.

Every known job is held in memory; the visible order is a list of ids (filtered, sorted). A change
to a job repaints only that job's line, and only if it is on screen; a cursor move repaints the two
lines it touches; nothing is measured or rebuilt per row, so 10,000 jobs cost what 50 do.
(Textual's DataTable measures every cell of every new row, which takes seconds at this size.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from fceval_tui.domain.models import Job, utcnow
from fceval_tui.presentation import elapsed, money, state_text
from fceval_tui.ui.filters import JobFilter


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # 0: takes the remaining width
    sort_key: Callable[[Job], object]
    right: bool = False
    drop: int = 0  # on a narrow table the highest goes first to make room for the task (0: always shown)


COLUMNS = (
    # The job's number within its run: the run progress above the table names the run.
    Column("id", "#", 5, lambda j: (j.run_id, j.seq)),
    Column("agent", "Agent", 9, lambda j: j.agent),
    Column("task", "Task", 0, lambda j: j.task_id),
    Column("model", "Model", 12, lambda j: j.model, drop=2),
    Column("backend", "Backend", 7, lambda j: j.backend, drop=5),  # also named by the run progress
    Column("state", "State", 18, lambda j: j.state.value),
    Column("attempts", "Att", 3, lambda j: j.attempts, right=True, drop=4),
    Column("elapsed", "Elapsed", 8, lambda j: j.started_at.timestamp() if j.started_at else 0, right=True, drop=1),
    Column("cost", "Cost", 8, lambda j: j.cost_usd, right=True, drop=3),
    Column("error", "Error", 12, lambda j: j.error_class or "", drop=6),
)
BY_KEY = {c.key: c for c in COLUMNS}
GAP = 1
MIN_TASK = 12
TASK_TARGET = 16  # narrower than this, the task gets the width of the least useful columns


def layout(width: int) -> tuple[tuple[Column, int], ...]:
    """The columns shown on a table `width` cells wide, each with its width; the task takes the rest."""
    shown = list(COLUMNS)
    droppable = sorted((c for c in COLUMNS if c.drop), key=lambda c: -c.drop)
    fixed = sum(c.width for c in shown) + GAP * (len(shown) + 1)
    while width - fixed < TASK_TARGET and droppable:
        column = droppable.pop(0)
        shown.remove(column)
        fixed -= column.width + GAP
    task = max(MIN_TASK, width - fixed)
    return tuple((c, c.width or task) for c in shown)


def cell_text(column: str, job: Job, now: datetime) -> Text:
    if column == "state":
        return state_text(job)
    if column == "error":
        return Text(job.error_class or "", style="red")
    value = {
        "id": f"{job.seq:03d}",
        "agent": job.agent,
        "task": job.task_id,
        "model": job.model,
        "backend": job.backend,
        "attempts": str(job.attempts),
        "elapsed": elapsed(job, now),
        "cost": money(job.cost_usd),
    }[column]
    return Text(value)


class JobsTable(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    JobsTable { height: 1fr; }
    JobsTable > .jobs-table--header { text-style: bold; background: $panel; }
    JobsTable > .jobs-table--cursor { background: $primary 40%; }
    JobsTable:focus > .jobs-table--cursor { background: $primary 70%; }
    JobsTable > .jobs-table--even { background: $surface; }
    """
    COMPONENT_CLASSES = {"jobs-table--header", "jobs-table--cursor", "jobs-table--even"}
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
    ]

    @dataclass
    class JobHighlighted(Message):
        """The cursor is on this job (None: the table is empty)."""

        job: Job | None

    @dataclass
    class JobSelected(Message):
        """Enter or a double click on this job's row."""

        job: Job

    def __init__(self, clock: Callable[[], datetime] = utcnow, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.jobs: dict[str, Job] = {}
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self.cursor = 0
        self.job_filter = JobFilter()
        self.sort_column = "id"
        self.sort_reverse = False
        self._lines: dict[str, tuple] = {}  # job id -> (job, style, width, elapsed, strip)
        self.lines_refreshed = 0  # on-screen rows repainted because their job changed (tests check incrementality)
        self._layout: tuple[int, tuple[tuple[Column, int], ...]] = (-1, ())  # (table width, columns for it)
        self._styles: tuple[bool, dict[str, Style]] | None = None  # (focused, styles): see _style

    # -- data -----------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def visible_ids(self) -> list[str]:
        return list(self._order)

    @property
    def selected(self) -> Job | None:
        return self.jobs[self._order[self.cursor]] if self._order else None

    def apply(self, jobs: Iterable[Job]) -> int:
        """Merge changed jobs; re-render only their lines. Returns the number of rows touched."""
        jobs = list(jobs)
        if not jobs:
            return 0
        sort_key = BY_KEY[self.sort_column].sort_key
        reorder = False
        touched = []
        for job in jobs:
            old = self.jobs.get(job.id)
            self.jobs[job.id] = job
            visible = self.job_filter(job)
            shown = job.id in self._index
            if visible != shown or (shown and sort_key(old) != sort_key(job)):
                reorder = True
            elif shown:
                touched.append(job.id)
        selected_id = self._order[self.cursor] if self._order else None
        if reorder:
            self._rebuild_order(selected_id)
        else:
            self.lines_refreshed += self._refresh_rows(*(self._index[job_id] for job_id in touched))
        if selected_id is None or selected_id in {j.id for j in jobs} or reorder:
            self._announce()
        return len(jobs)

    def tick(self) -> None:
        """Repaint when an active job is on screen: elapsed time is the only thing that changes by itself."""
        top = int(self.scroll_y)
        rows = range(top, min(top + self.size.height - 1, len(self._order)))
        if any(
            self.jobs[self._order[row]].started_at and not self.jobs[self._order[row]].state.is_final for row in rows
        ):
            self.refresh()

    def set_filter(self, job_filter: JobFilter) -> None:
        self.job_filter = job_filter
        self._rebuild_order(self._order[self.cursor] if self._order else None)
        self._announce()

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        if column == self.sort_column and reverse is None:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column = column
            self.sort_reverse = bool(reverse)
        self._rebuild_order(self._order[self.cursor] if self._order else None)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()  # a theme change restyles every line
        self._styles = None

    def _rebuild_order(self, keep: str | None) -> None:
        key = BY_KEY[self.sort_column].sort_key
        ids = [j.id for j in self.jobs.values() if self.job_filter(j)]
        ids.sort(key=lambda job_id: key(self.jobs[job_id]), reverse=self.sort_reverse)
        self._order = ids
        self._index = {job_id: i for i, job_id in enumerate(ids)}
        self.cursor = self._index.get(keep, min(self.cursor, max(0, len(ids) - 1)))
        self.virtual_size = Size(self.size.width, len(ids) + 1)
        self.refresh()

    # -- rendering ------------------------------------------------------------------------------

    def _columns(self) -> tuple[tuple[Column, int], ...]:
        width = self.size.width
        if self._layout[0] != width:
            self._layout = (width, layout(width))
        return self._layout[1]

    def _style(self, name: str) -> Style:
        """The row styles, worked out once per focus change or theme (Textual drops its own cache of
        them on every repaint, and working them out costs more than drawing a cached line)."""
        if self._styles is None or self._styles[0] != self.has_focus:
            self._styles = (
                self.has_focus,
                {
                    "header": self.get_component_rich_style("jobs-table--header"),
                    "cursor": self.get_component_rich_style("jobs-table--cursor"),
                    "even": self.get_component_rich_style("jobs-table--even"),
                    "odd": self.rich_style,
                },
            )
        return self._styles[1][name]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            style = self._style("header")
            return self._strip([self._header_text(c) for c, _ in self._columns()], style, width)
        row = int(self.scroll_y) + y - 1
        if row >= len(self._order):
            return Strip.blank(width, self._style("odd"))
        job = self.jobs[self._order[row]]
        style = self._style("cursor" if row == self.cursor else "even" if row % 2 else "odd")
        now = self.clock()
        ticking = elapsed(job, now) if job.started_at and not job.state.is_final else ""
        cached = self._lines.get(job.id)
        # A repaint re-renders every visible line; reuse those whose job, style and clock did not change.
        if cached and cached[0] is job and cached[1:4] == (style, width, ticking):
            return cached[4]
        strip = self._strip([cell_text(c.key, job, now) for c, _ in self._columns()], style, width)
        self._lines[job.id] = (job, style, width, ticking, strip)
        return strip

    def _header_text(self, column: Column) -> Text:
        arrow = (" ▼" if self.sort_reverse else " ▲") if column.key == self.sort_column else ""
        return Text(column.label + arrow)

    def _strip(self, cells: list[Text], base: Style, width: int) -> Strip:
        segments = [Segment(" " * GAP, base)]
        for (column, cell_width), text in zip(self._columns(), cells, strict=True):
            text.truncate(cell_width, overflow="ellipsis", pad=False)
            pad = " " * (cell_width - text.cell_len)
            if column.right:
                segments.append(Segment(pad, base))
            segments.extend(text.render(self.app.console) if text.spans or text.style else [Segment(text.plain)])
            if not column.right:
                segments.append(Segment(pad, base))
            segments.append(Segment(" " * GAP, base))
        strip = Strip(Segment.apply_style(segments, base))
        return strip.adjust_cell_length(width, base)

    def _on_screen(self, row: int) -> bool:
        return 0 <= row - int(self.scroll_y) < self.size.height - 1

    def _refresh_rows(self, *rows: int) -> int:
        """Repaint these rows where they are on screen (below the header); returns how many."""
        top = int(self.scroll_y)
        on_screen = [row for row in rows if self._on_screen(row)]
        for row in on_screen:
            self.refresh(Region(0, row - top + 1, self.size.width, 1))
        return len(on_screen)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self._order) + 1)

    # -- cursor and mouse -----------------------------------------------------------------------

    def _move(self, row: int) -> None:
        if not self._order:
            return
        row = max(0, min(len(self._order) - 1, row))
        if row == self.cursor:
            return
        old, self.cursor = self.cursor, row
        visible_rows = max(1, self.size.height - 1)
        top = int(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=False)
            self.refresh()
        elif row >= top + visible_rows:
            self.scroll_to(y=row - visible_rows + 1, animate=False)
            self.refresh()
        else:
            self._refresh_rows(old, row)  # the cursor left one line for another: only they change
        self._announce()

    def action_cursor(self, delta: int) -> None:
        self._move(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move(self.cursor + direction * max(1, self.size.height - 2))

    def action_jump(self, row: int) -> None:
        self._move(row if row >= 0 else len(self._order) - 1)

    def action_select(self) -> None:
        if self.selected is not None:
            self.post_message(self.JobSelected(self.selected))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            x = GAP
            for column, width in self._columns():
                if x <= event.x < x + width + GAP:
                    self.sort_by(column.key)
                    return
                x += width + GAP
            return
        row = int(self.scroll_y) + event.y - 1
        if row < len(self._order):
            self._move(row)
            if event.chain == 2:
                self.action_select()

    def _announce(self) -> None:
        self.post_message(self.JobHighlighted(self.selected))
