"""`fceval-tui report`: exact results from known grading reports, and two runs compared per task."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

from fceval_tui.domain.models import JobSpec, utcnow
from fceval_tui.domain.states import JobState
from tests.helpers.cli import run_cli


def _finish(ledger, job, tmp_path, state, report: dict | None, minutes: float, cost: float, error_class=None):
    artifacts = []
    if report is not None:
        path = tmp_path / f"{job.id}_grading_report.json.gz"
        path.write_bytes(gzip.compress(json.dumps(report).encode()))
        artifacts.append(str(path))
    start = utcnow() - timedelta(hours=1)
    ledger.transition(job.id, JobState.STARTING, attempts=1, started_at=start)
    ledger.transition(job.id, JobState.RUNNING)
    ledger.transition(job.id, JobState.UPLOADING)
    ledger.transition(
        job.id,
        state,
        ended_at=start + timedelta(minutes=minutes),
        artifacts=tuple(artifacts),
        cost_usd=cost,
        error_class=error_class,
    )


def test_report_of_a_finished_run_is_exact(ledger, state_dir, tmp_path):
    specs = [JobSpec("aide", "t1", "gpt"), JobSpec("aide", "t2", "gpt"), JobSpec("aide", "t3", "gpt")]
    specs += [JobSpec("biomni", "t1", "claude"), JobSpec("biomni", "t2", "claude")]
    run, jobs = ledger.create_run("local", 2, specs)
    _finish(ledger, jobs[0], tmp_path, JobState.SUCCEEDED, {"score": 0.9}, 10, 0.25)
    _finish(ledger, jobs[1], tmp_path, JobState.SUCCEEDED, {"score": 0.5}, 20, 0.25)
    _finish(ledger, jobs[2], tmp_path, JobState.FAILED, None, 30, 0.5, error_class="capacity")
    _finish(ledger, jobs[3], tmp_path, JobState.SUCCEEDED, {"is_resolved": True}, 5, 0.1)
    _finish(ledger, jobs[4], tmp_path, JobState.FAILED, {"verdict": "meh"}, 15, 0.1, error_class="harness_exit")
    res = run_cli("report", run.id, "--json", state_dir=state_dir)
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["groups"] == [
        {
            "agent": "aide",
            "model": "gpt",
            "dataset": "",
            "jobs": 3,
            "succeeded": 2,
            "failed": {"capacity": 1},
            "scored": 2,
            "unscored": 1,
            "score_mean": 0.7,
            "score_median": 0.7,
            "duration_median_s": 1200.0,
            "duration_p90_s": 1800.0,
            "cost_usd": 1.0,
        },
        {
            "agent": "biomni",
            "model": "claude",
            "dataset": "",
            "jobs": 2,
            "succeeded": 1,
            "failed": {"harness_exit": 1},
            "scored": 1,
            "unscored": 1,
            "score_mean": 1.0,
            "score_median": 1.0,
            "duration_median_s": 600.0,
            "duration_p90_s": 900.0,
            "cost_usd": 0.2,
        },
    ]
    assert report["notes"] == [
        f"{jobs[4].id}: grading report of an unknown format (no score, accuracy, passed or resolved field)"
    ]
    table = run_cli("report", run.id, state_dir=state_dir).out
    assert "capacity:1" in table and "harness_exit:1" in table
    csv_lines = run_cli("report", run.id, "--csv", state_dir=state_dir).out.splitlines()
    assert csv_lines[1] == "aide,gpt,,3,2,capacity:1,0.7,0.7,2,1200.0,1800.0,1.0"


def test_two_runs_are_compared_per_task(ledger, state_dir, tmp_path):
    first, a = ledger.create_run("local", 1, [JobSpec("aide", "t1"), JobSpec("aide", "t2")])
    second, b = ledger.create_run("local", 1, [JobSpec("aide", "t1"), JobSpec("aide", "t2")])
    _finish(ledger, a[0], tmp_path, JobState.SUCCEEDED, {"score": 0.4}, 1, 0)
    _finish(ledger, a[1], tmp_path, JobState.FAILED, None, 1, 0, error_class="timeout")
    _finish(ledger, b[0], tmp_path, JobState.SUCCEEDED, {"score": 0.4}, 1, 0)
    _finish(ledger, b[1], tmp_path, JobState.SUCCEEDED, {"passed": True}, 1, 0)
    report = json.loads(run_cli("report", first.id, second.id, "--json", state_dir=state_dir).out)
    assert report["differences"] == [
        {
            "agent": "aide",
            "model": "",
            "task_id": "t2",
            "before": "failed",
            "after": "succeeded",
            "score_before": None,
            "score_after": 1.0,
        }
    ]


def test_report_json_carries_the_runs_cost_over_time_from_its_attempts(ledger, state_dir):
    """A job retried once (its first attempt on spot, priced from the spot history; the second at the
    table price) and a job that ran alongside: the cumulative series is exact at every start and end."""
    from datetime import UTC, datetime

    from fceval_tui.domain.prices import HourlyPrice, PriceSource

    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    run, (retried, other) = ledger.create_run("ec2", 2, [JobSpec("aide", "t1"), JobSpec("aide", "t2")])
    ledger.transition(retried.id, JobState.PROVISIONING, attempts=1, started_at=t0)
    ledger.set_attempt_price(retried.id, 1, HourlyPrice(0.04, PriceSource.SPOT_HISTORY))
    ledger.set_attempt_cost(retried.id, 1, 0.02, until=t0 + timedelta(minutes=30))
    ledger.transition(retried.id, JobState.FAILED, error_class="lost_session")
    ledger.transition(retried.id, JobState.PENDING)
    ledger.transition(retried.id, JobState.PROVISIONING, attempts=2, started_at=t0 + timedelta(minutes=40))
    ledger.set_attempt_cost(retried.id, 2, 0.1, until=t0 + timedelta(minutes=100))
    ledger.transition(other.id, JobState.PROVISIONING, attempts=1, started_at=t0 + timedelta(minutes=10))
    ledger.set_attempt_cost(other.id, 1, 0.06, until=t0 + timedelta(minutes=70))
    report = json.loads(run_cli("report", run.id, "--json", state_dir=state_dir).out)
    (series,) = report["cost_over_time"]
    assert series["run"] == run.id
    assert [(p["at"][11:16], p["cost_usd"]) for p in series["points"]] == [
        ("12:00", 0.0),
        ("12:10", 0.006667),  # a third of the first attempt
        ("12:30", 0.04),  # the first attempt's whole 0.02 and a third of the other job's 0.06
        ("12:40", 0.05),
        ("13:10", 0.13),  # 0.02 + the other job's whole 0.06 + half of the second attempt's 0.1
        ("13:40", 0.18),  # = the run's total
    ]
    assert series["price_sources"] == {"backend price table": 2, "spot price at launch": 1}
    assert series["untimed_cost_usd"] == 0
    assert sum(g["cost_usd"] for g in report["groups"]) == 0.18


def test_two_runs_side_by_side_each_with_its_own_numbers(ledger, state_dir, tmp_path):
    first, a = ledger.create_run("local", 1, [JobSpec("aide", "t1"), JobSpec("aide", "t2")])
    second, b = ledger.create_run("local", 1, [JobSpec("aide", "t1"), JobSpec("aide", "t2")])
    _finish(ledger, a[0], tmp_path, JobState.SUCCEEDED, {"score": 0.4}, 1, 0.5)
    _finish(ledger, a[1], tmp_path, JobState.FAILED, None, 1, 0.5, error_class="timeout")
    _finish(ledger, b[0], tmp_path, JobState.SUCCEEDED, {"score": 0.4}, 1, 1.0)
    _finish(ledger, b[1], tmp_path, JobState.SUCCEEDED, {"passed": True}, 1, 1.0)
    report = json.loads(run_cli("report", first.id, second.id, "--json", state_dir=state_dir).out)
    side = report["side_by_side"]
    assert [(row["agent"], row["model"], row["dataset"]) for row in side] == [("aide", "", "")]
    per_run = side[0]["runs"]
    assert list(per_run) == [first.id, second.id]
    assert (per_run[first.id]["jobs"], per_run[first.id]["succeeded"], per_run[first.id]["score_mean"]) == (2, 1, 0.4)
    assert (per_run[second.id]["succeeded"], per_run[second.id]["score_mean"], per_run[second.id]["cost_usd"]) == (
        2,
        0.7,
        2.0,
    )
    table = run_cli("report", first.id, second.id, state_dir=state_dir).out
    assert f"ok {first.id}" in table and f"ok {second.id}" in table
    same = run_cli("report", first.id, first.id, state_dir=state_dir)
    assert same.code == 2 and f"run {first.id} is given twice" in same.err
    # Two runs without a difference say so rather than print nothing.
    third, c = ledger.create_run("local", 1, [JobSpec("aide", "t1")])
    fourth, d = ledger.create_run("local", 1, [JobSpec("aide", "t1")])
    _finish(ledger, c[0], tmp_path, JobState.SUCCEEDED, None, 1, 0)
    _finish(ledger, d[0], tmp_path, JobState.SUCCEEDED, None, 1, 0)
    assert "no per-task differences" in run_cli("report", third.id, fourth.id, state_dir=state_dir).out
