"""One progress line per run: done / total, failed, active."""

from __future__ import annotations

from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.widget import Widget

from fceval_tui.domain.states import JobState
from fceval_tui.ledger import RunSummary
from fceval_tui.presentation import PAUSED_ICON, PAUSED_STYLE, money

MAX_RUNS = 4


class RunProgress(Widget):
    """Re-rendered in place on every poll; the layout is redone only when the number of runs shown changes
    (a full layout pass on every poll would cost the whole screen a repaint)."""

    DEFAULT_CSS = """
    RunProgress { height: 1; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._summaries: list[RunSummary] = []

    def show(self, summaries: list[RunSummary]) -> None:
        rows = max(1, min(MAX_RUNS, len(summaries)))
        self._summaries = summaries
        if self.styles.height is None or self.styles.height.value != rows:
            self.styles.height = rows
        self.refresh()

    def render(self):
        summaries = self._summaries
        if not summaries:
            return Text("no runs yet: press n to launch jobs", style="dim")
        grid = Table.grid(padding=(0, 2), expand=True)
        grid.add_column(no_wrap=True)
        grid.add_column(ratio=1)
        grid.add_column(no_wrap=True)
        for summary in summaries[-MAX_RUNS:][::-1]:
            counts = summary.counts
            failed = counts.get("failed", 0) + counts.get("timed_out", 0)
            active = sum(n for s, n in counts.items() if not JobState(s).is_final and s != "pending")
            detail = Text(f"{summary.done}/{summary.total} done")
            detail.append(f"  ✓{counts.get('succeeded', 0)}", style="green")
            detail.append(f"  ✗{failed}", style="red" if failed else "dim")
            detail.append(f"  ▶{active}", style="blue" if active else "dim")
            pending = counts.get("pending", 0)
            if pending:
                detail.append(f"  ·{pending}", style="dim")
            if summary.run.backend != "local":  # the running total of a cloud run
                detail.append(f"  {money(summary.cost_usd)}", style="bold")
            if summary.paused and active:
                detail.append(f"  {PAUSED_ICON} {summary.paused}", style=PAUSED_STYLE)
            grid.add_row(
                Text(f"{summary.run.id} {summary.run.backend}", style="bold"),
                ProgressBar(total=max(summary.total, 1), completed=summary.done),
                detail,
            )
        return grid
