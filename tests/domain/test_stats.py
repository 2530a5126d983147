from datetime import UTC, datetime, timedelta

import pytest

from fceval_tui.domain.prices import price_in_effect
from fceval_tui.domain.stats import Bucket, Span, cumulative, histogram, sample, wilson_interval

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_wilson_interval_of_eight_in_ten():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3)
    assert high == pytest.approx(0.9433, abs=1e-3)


def test_wilson_interval_stays_inside_zero_and_one():
    assert wilson_interval(0, 5)[0] == 0.0
    assert wilson_interval(5, 5)[1] == pytest.approx(1.0)
    low, high = wilson_interval(0, 5)
    assert 0.0 <= low < high <= 1.0


def test_wilson_interval_without_trials_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_narrows_with_more_trials():
    small = wilson_interval(5, 10)
    large = wilson_interval(500, 1000)
    assert large[1] - large[0] < small[1] - small[0]


def test_histogram_counts_every_value_once_and_the_maximum_in_the_last_bucket():
    buckets = histogram([0, 1, 2, 3, 4, 5, 6], buckets=3)
    assert [b.count for b in buckets] == [2, 2, 3]
    assert buckets[0].low == 0 and buckets[-1].high == 6
    assert sum(b.count for b in buckets) == 7


def test_histogram_of_equal_values_is_one_bucket():
    assert histogram([42.0, 42.0]) == [Bucket(42.0, 42.0, 2)]


def test_histogram_buckets_are_never_narrower_than_the_resolution_shown():
    """Durations between 60 s and 62 s in five buckets would all be labelled 1:00-1:00 on screen."""
    buckets = histogram([60.25, 60.5, 61.25, 61.75], buckets=5, min_width=1.0)
    assert [(b.low, b.high, b.count) for b in buckets] == [(60.25, 61.25, 2), (61.25, 62.25, 2)]


def test_histogram_of_nothing_is_empty():
    assert histogram([]) == []


def test_cumulative_cost_is_exact_at_every_start_and_end():
    # $0.60 over 0-60 min, $0.30 over 30-40 min, and $0.05 at once at 50 min (an attempt that died at launch).
    spans = [Span(at(0), at(60), 0.6), Span(at(30), at(40), 0.3), Span(at(50), at(50), 0.05)]
    points = cumulative(spans)
    assert [p[0] for p in points] == [at(0), at(30), at(40), at(50), at(60)]
    assert [round(p[1], 6) for p in points] == [0.0, 0.3, 0.7, 0.85, 0.95]


def test_cumulative_of_nothing_is_empty():
    assert cumulative([]) == []


def test_sample_interpolates_between_points_and_ends_at_the_total():
    points = [(at(0), 0.0), (at(10), 1.0), (at(20), 1.0), (at(30), 4.0)]
    assert [round(v, 6) for v in sample(points, 7)] == [0.0, 0.5, 1.0, 1.0, 1.0, 2.5, 4.0]
    assert sample([(at(5), 2.0)], 3) == [2.0, 2.0, 2.0]
    assert sample([], 3) == []


def test_the_spot_price_in_effect_is_the_last_change_before_the_launch():
    history = [(at(-90), 0.031), (at(-10), 0.034), (at(5), 0.040)]
    assert price_in_effect(history, at(0)) == 0.034
    assert price_in_effect(history, at(5)) == 0.040
    assert price_in_effect(history, at(-100)) is None
