"""Results of a run (the highlighted job's, or the newest): the `fceval-tui report` numbers as a table,
then pictures: pass rate with its 95% confidence interval, how long jobs took, and what the run cost
over time."""

from __future__ import annotations

from rich.console import Group as RichGroup
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from fceval_tui.domain.stats import histogram, wilson_interval
from fceval_tui.presentation import duration, money
from fceval_tui.services.report import Group, Report, build_report
from fceval_tui.ui.messages import ResultsLoaded
from fceval_tui.ui.polling import PollingScreen
from fceval_tui.ui.widgets.cost_chart import CostChart, describe

BAR = 20  # cells of the pass-rate bar
HISTOGRAM_BAR = 16  # cells of the longest histogram bar
BUCKETS = 5


def _label(group: Group) -> str:
    return " / ".join(part for part in (group.agent, group.model or "-", group.dataset) if part)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def results_table(report: Report) -> Table:
    table = Table(title=f"run {', '.join(report.run_ids)}", expand=True, title_justify="left")
    for name in ("agent / model / dataset", "jobs", "ok", "failed", "score mean", "median", "dur. median", "p90"):
        table.add_column(name, justify="left" if name in ("agent / model / dataset", "failed") else "right")
    table.add_column("cost", justify="right")
    for group in report.groups:
        row = group.to_json()  # the CLI's numbers, computed once there
        failed = ", ".join(f"{label} {n}" for label, n in row["failed"].items()) or "—"
        table.add_row(
            _label(group),
            str(group.jobs),
            str(group.succeeded),
            failed,
            _number(row["score_mean"]),
            _number(row["score_median"]),
            duration(row["duration_median_s"]) if row["duration_median_s"] is not None else "—",
            duration(row["duration_p90_s"]) if row["duration_p90_s"] is not None else "—",
            money(group.cost_usd),
        )
    return table


def pass_rate_bar(succeeded: int, jobs: int, good: str, bad: str) -> Text:
    """`████████░░  80% [49–94%]`: filled cells for the rate; the interval as a lighter band behind it."""
    rate = succeeded / jobs if jobs else 0.0
    low, high = wilson_interval(succeeded, jobs)
    filled = round(rate * BAR)
    band_end = max(filled, round(high * BAR))
    bar = Text()
    bar.append("█" * filled, style=good)
    bar.append("▒" * (band_end - filled), style=good)
    bar.append("░" * (BAR - band_end), style=bad)
    bar.append(f" {rate:4.0%} [{low * 100:.0f}–{high * 100:.0f}%]")
    return bar


def pass_rate_text(group: Group, good: str, bad: str) -> Text:
    """The pass rate of the group's finished jobs: running ones would read as failures."""
    finished = group.succeeded + sum(group.failed.values())
    unfinished = group.jobs - finished
    if not finished:
        return Text(f"no job finished yet ({unfinished} not finished)")
    text = pass_rate_bar(group.succeeded, finished, good, bad)
    if unfinished:
        text.append(f"  {unfinished} not finished")
    return text


def duration_histogram(durations: list[float], colour: str) -> Text:
    buckets = histogram(durations, BUCKETS, min_width=1.0)  # labels show whole seconds
    most = max((b.count for b in buckets), default=0)
    text = Text()
    for bucket in buckets:
        cells = round(bucket.count / most * HISTOGRAM_BAR) if most else 0
        text.append(f"  {duration(bucket.low):>7}–{duration(bucket.high):<7} ")
        text.append("▇" * cells, style=colour)
        text.append(f" {bucket.count}\n")
    return text


class ResultsScreen(PollingScreen):
    poll_interval = 5.0
    BINDINGS = [Binding("ctrl+r", "refresh", "Refresh", id="results.refresh")]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("loading…", id="results")
        yield Footer()

    def action_refresh(self) -> None:
        self.poll_now()

    def start_poll(self) -> None:
        self._load(self.app.highlighted_run_id())

    @work(thread=True, exclusive=True, group="results-poll", exit_on_error=False)
    def _load(self, run_id: str | None) -> None:
        ledger = self.app.ledger
        if run_id is None:
            summaries = ledger.run_summaries()
            if not summaries:
                self.post_message(ResultsLoaded(None))
                return
            run_id = max(summaries, key=lambda s: s.run.created_at).run.id
        self.post_message(ResultsLoaded(build_report(ledger, [run_id], self.app.read_grading_report)))

    def on_results_loaded(self, message: ResultsLoaded) -> None:
        report = message.report
        view = self.query_one("#results", Static)
        if report is None:
            self.sub_title = "results"
            view.update("No runs yet: press n to launch one.")
        else:
            self.sub_title = f"results of run {', '.join(report.run_ids)}"
            view.update(self._pictures(report))
        self.poll_done()

    def _pictures(self, report: Report) -> RichGroup:
        theme = self.app.current_theme
        good, bad, accent = theme.success or "green", theme.error or "red", theme.accent or "blue"
        parts: list = [
            results_table(report),
            Text("\nPass rate (succeeded / finished jobs, 95% Wilson interval)", style="bold"),
        ]
        width = max((len(_label(g)) for g in report.groups), default=0)
        for group in report.groups:
            parts.append(Text.assemble(f"  {_label(group):<{width}}  ", pass_rate_text(group, good, bad)))
        parts.append(Text("\nDurations", style="bold"))
        for group in report.groups:
            if not group.durations:
                continue
            median = group.to_json()["duration_median_s"]
            parts.append(Text(f"  {_label(group)} (median {duration(median)})"))
            parts.append(duration_histogram(group.durations, accent))
        for series in report.costs:
            parts.append(Text(f"\nCost over time (cumulative, run {series.run_id})", style="bold"))
            parts.append(Text(f"  {describe(series)}"))
            parts.append(CostChart(series, accent))
        parts.extend(Text(note, style="dim") for note in report.notes)
        return RichGroup(*parts)
