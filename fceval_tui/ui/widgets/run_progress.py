"""One progress line per run: done / total, failed, active."""

from __future__ import annotations

from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from fceval_tui.domain.states import JobState
from fceval_tui.store import RunSummary

MAX_RUNS = 4


class RunProgress(Static):
    DEFAULT_CSS = """
    RunProgress { height: auto; max-height: 5; padding: 0 1; }
    """

    def show(self, summaries: list[RunSummary]) -> None:
        if not summaries:
            self.update(Text("no runs yet: press n to launch jobs", style="dim"))
            return
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
            grid.add_row(Text(f"{summary.run.id} {summary.run.backend}", style="bold"),
                         ProgressBar(total=max(summary.total, 1), completed=summary.done),
                         detail)
        self.update(grid)
