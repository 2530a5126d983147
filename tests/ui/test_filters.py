"""The `/` filter language knows a job's error class."""

from __future__ import annotations

from fceval_tui.domain.models import Job
from fceval_tui.domain.states import JobState
from fceval_tui.ui.filters import parse


def _job(seq: int, error_class: str | None) -> Job:
    return Job(f"r1-{seq:03d}", "r1", seq, "aide", f"t{seq}", "", "", "local", JobState.FAILED, error_class=error_class)


def test_error_class_filter_and_its_negation():
    jobs = [_job(1, "capacity"), _job(2, "harness_exit"), _job(3, None)]
    assert [j.seq for j in jobs if parse("error:capacity")(j)] == [1]
    assert [j.seq for j in jobs if parse("error:capacity,harness")(j)] == [1, 2]
    assert [j.seq for j in jobs if parse("!error:capacity state:failed")(j)] == [2, 3]
