"""A run's cumulative cost against time, drawn as a filled area of eighth-block characters (a Rich
renderable that takes the width it is given), with the total at the top of its axis and the time
since the run's first attempt began along the bottom."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from fceval_tui.domain.stats import sample
from fceval_tui.presentation import duration, money
from fceval_tui.services.cost_over_time import CostSeries

EIGHTHS = " ▁▂▃▄▅▆▇█"
INDENT = "  "


def describe(series: CostSeries) -> str:
    """One line: the total, over how long, and which prices it was billed at."""
    if not series.points and not series.untimed_usd:
        return "no cost recorded for this run"
    first, last = series.points[0][0], series.points[-1][0]
    text = f"{money(series.total_usd)} over {duration((last - first).total_seconds())}"
    if series.prices:
        text += "; prices: " + ", ".join(f"{source} ×{n}" for source, n in sorted(series.prices.items()))
    if series.untimed_usd:
        text += f"; {money(series.untimed_usd)} from attempts with no recorded times is left out of the chart"
    return text


class CostChart:
    def __init__(self, series: CostSeries, colour: str, height: int = 6) -> None:
        self.series = series
        self.colour = colour
        self.height = height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        points = self.series.points
        if len(points) < 2:
            return
        top = points[-1][1]
        labels = [money(top), money(0)]
        label_width = max(map(len, labels))
        columns = max(8, options.max_width - len(INDENT) - label_width - 2)
        values = sample(list(points), columns)
        levels = [round(v / top * self.height * 8) if top > 0 else 0 for v in values]
        for row in range(self.height - 1, -1, -1):
            label = labels[0] if row == self.height - 1 else ""
            line = Text(f"{INDENT}{label:>{label_width}} {'┤' if label else '│'}")
            line.append("".join(EIGHTHS[min(8, max(0, level - row * 8))] for level in levels), style=self.colour)
            yield line
        yield Text(f"{INDENT}{labels[1]:>{label_width}} ┼" + "─" * columns)
        yield self._time_axis(label_width, columns)

    def _time_axis(self, label_width: int, columns: int) -> Text:
        points = self.series.points
        seconds = (points[-1][0] - points[0][0]).total_seconds()
        start, middle, end = "0:00", duration(seconds / 2), duration(seconds)
        axis = [" "] * columns
        for text, at in ((start, 0), (middle, (columns - len(middle)) // 2), (end, columns - len(end))):
            axis[at : at + len(text)] = text
        return Text(f"{INDENT}{'':>{label_width}}  " + "".join(axis), style="dim")
