import pytest

from fceval_tui.domain.stats import Bucket, histogram, wilson_interval


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


def test_histogram_of_nothing_is_empty():
    assert histogram([]) == []
