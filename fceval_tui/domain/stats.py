"""Small statistics for the results view: a proportion's confidence interval, histogram buckets, and a
running total of costs accrued over time."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

Z95 = 1.959964  # two-sided 95% normal quantile


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of successes/trials (stays inside [0, 1] and is sane for small samples)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Bucket:
    low: float
    high: float  # the last bucket includes its upper bound
    count: int


def histogram(values: list[float], buckets: int = 6, min_width: float = 0.0) -> list[Bucket]:
    """Equal-width buckets from the smallest to the largest value; one bucket when all values are equal.
    Buckets are at least `min_width` wide (fewer of them), so labels at that resolution stay distinct."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high == low:
        return [Bucket(low, high, len(values))]
    width = max((high - low) / buckets, min_width)
    buckets = math.ceil((high - low) / width)
    counts = [0] * buckets
    for value in values:
        counts[min(buckets - 1, int((value - low) / width))] += 1
    return [Bucket(low + i * width, low + (i + 1) * width, n) for i, n in enumerate(counts)]


@dataclass(frozen=True)
class Span:
    """A cost accrued evenly from `start` to `end` (an attempt billed at its hourly price)."""

    start: datetime
    end: datetime
    cost: float


def cumulative(spans: Iterable[Span]) -> list[tuple[datetime, float]]:
    """The running total of the spans' costs at every start and end, in time order: exact, since the
    total is linear between those instants. A span with no length adds its cost at once."""
    changes: dict[datetime, float] = {}  # instant -> change of the total's slope (USD per second)
    jumps: dict[datetime, float] = {}
    for span in spans:
        seconds = (span.end - span.start).total_seconds()
        if seconds <= 0:
            jumps[span.start] = jumps.get(span.start, 0.0) + span.cost
            continue
        rate = span.cost / seconds
        changes[span.start] = changes.get(span.start, 0.0) + rate
        changes[span.end] = changes.get(span.end, 0.0) - rate
    points: list[tuple[datetime, float]] = []
    total = slope = 0.0
    previous: datetime | None = None
    for instant in sorted(changes.keys() | jumps.keys()):
        if previous is not None:
            total += slope * (instant - previous).total_seconds()
        total += jumps.get(instant, 0.0)
        slope += changes.get(instant, 0.0)
        points.append((instant, total))
        previous = instant
    return points


def sample(points: list[tuple[datetime, float]], count: int) -> list[float]:
    """The piecewise-linear series at `count` evenly spaced instants from its first to its last point."""
    if not points or count <= 0:
        return []
    first, last = points[0][0], points[-1][0]
    width = (last - first).total_seconds()
    if count == 1 or width <= 0:
        return [points[-1][1]] * count
    values, index = [], 0
    for i in range(count):
        at = first.timestamp() + width * i / (count - 1)
        while index < len(points) - 2 and points[index + 1][0].timestamp() < at:
            index += 1
        (t0, v0), (t1, v1) = points[index], points[min(index + 1, len(points) - 1)]
        span = t1.timestamp() - t0.timestamp()
        fraction = min(1.0, max(0.0, (at - t0.timestamp()) / span)) if span > 0 else 1.0
        values.append(v0 + (v1 - v0) * fraction)
    return values
