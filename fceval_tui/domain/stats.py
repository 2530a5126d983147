"""Small statistics for the results view: a proportion's confidence interval and histogram buckets."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def histogram(values: list[float], buckets: int = 6) -> list[Bucket]:
    """Equal-width buckets from the smallest to the largest value; one bucket when all values are equal."""
    if not values:
        return []
    low, high = min(values), max(values)
    if high == low:
        return [Bucket(low, high, len(values))]
    width = (high - low) / buckets
    counts = [0] * buckets
    for value in values:
        counts[min(buckets - 1, int((value - low) / width))] += 1
    return [Bucket(low + i * width, low + (i + 1) * width, n) for i, n in enumerate(counts)]
