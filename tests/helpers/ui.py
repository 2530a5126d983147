"""Deterministic console fixtures: a fixed clock, a ledger seeded with fixed data, fixed terminal size; the
console fixtures the UI tests share (`seeded`, `seeded_ledger`, `quiet_console`, `utc`) and waiting on a pilot."""

from __future__ import annotations

import gzip
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from fceval_tui.backends.base import Resource
from fceval_tui.domain.models import JobSpec
from fceval_tui.domain.states import JobState as S
from fceval_tui.ledger import Ledger

T0 = datetime(2026, 11, 22, 9, 30, 0, tzinfo=UTC)
SIZE = (120, 36)


class Clock:
    """Advances one second per call from T0, so event timestamps are distinct but fixed."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def fixed(at: datetime = T0 + timedelta(minutes=5)):
    return lambda: at


def seed(ledger: Ledger) -> str:
    """A run with jobs in every interesting state; returns the run id."""
    specs = [
        JobSpec("aide", "polarishub/tdcommons-caco2-wang", "gpt-4o"),
        JobSpec("aide", "shapely_2032", "gpt-4o"),
        JobSpec("biomni", "proteingym-dms/A0A1I9", "claude"),
        JobSpec("biomni", "always-fail-demo", "claude"),
        JobSpec("dummy", "hello-world"),
        JobSpec("dummy", "slow-task"),
        JobSpec("aide", "capacity-task"),
    ]
    run, jobs = ledger.create_run("local", 3, specs, run_id="r0demo01")
    started = T0 + timedelta(seconds=10)

    def go(job, *path, **fields):
        for state in path[:-1]:
            ledger.transition(job.id, state)
        return ledger.transition(job.id, path[-1], **fields)

    go(
        jobs[0],
        S.STARTING,
        S.RUNNING,
        S.GRADING,
        S.UPLOADING,
        S.SUCCEEDED,
        attempts=1,
        exit_code=0,
        started_at=started,
        ended_at=started + timedelta(seconds=95),
        resource_id=jobs[0].id,
        artifacts=("/data/artifacts/runs/aide/polarishub/tdcommons-caco2-wang/r0demo01_gpt-4o.tar.gz",),
    )
    go(jobs[1], S.STARTING, S.RUNNING, attempts=1, started_at=started, resource_id=jobs[1].id)
    go(
        jobs[2],
        S.STARTING,
        S.RUNNING,
        S.GRADING,
        attempts=1,
        started_at=started + timedelta(seconds=30),
        resource_id=jobs[2].id,
    )
    ledger.transition(jobs[3].id, S.STARTING, attempts=1, started_at=started)
    ledger.transition(jobs[3].id, S.RUNNING)
    ledger.transition(
        jobs[3].id,
        S.FAILED,
        exit_code=3,
        ended_at=started + timedelta(seconds=40),
        error="agent step exited with code 3",
        error_class="harness_exit",
    )
    ledger.transition(jobs[5].id, S.STARTING, attempts=1, started_at=started)
    ledger.transition(
        jobs[5].id, S.TIMED_OUT, ended_at=started + timedelta(minutes=2), error="exceeded 2 min", error_class="timeout"
    )
    ledger.transition(jobs[6].id, S.WAITING_CAPACITY, reason="InsufficientInstanceCapacity in us-east-1a")
    ledger.record(run.id, jobs[6].id, "capacity_wait", error="InsufficientInstanceCapacity", retry_in=4.2)
    return run.id


# (agent, model, task, final state, error class, seconds, score in its grading report or None, cost)
GRADED = [
    *[("aide", "gpt-4o", f"t{i:02d}", S.SUCCEEDED, None, 60 + 12 * i, 0.5 + 0.05 * i, 0.04) for i in range(8)],
    ("aide", "gpt-4o", "t08", S.FAILED, "harness_exit", 30, None, 0.02),
    ("aide", "gpt-4o", "t09", S.TIMED_OUT, "timeout", 600, None, 0.31),
    ("biomni", "claude", "t00", S.SUCCEEDED, None, 200, 1.0, 0.5),
    ("biomni", "claude", "t01", S.SUCCEEDED, None, 260, 0.0, 0.6),
    ("biomni", "claude", "t02", S.SUCCEEDED, None, 300, 1.0, 0.7),
    ("biomni", "claude", "t03", S.FAILED, "provision", 5, None, 0.0),
    ("biomni", "claude", "t04", S.TIMED_OUT, "timeout", 900, None, 1.2),
]


def seed_graded(ledger: Ledger, reports: Path) -> str:
    """A finished run of two agent x model groups whose succeeded jobs have grading reports in `reports`
    (the results view's data; the other views' snapshots use `seed`). Returns the run id."""
    specs = [JobSpec(agent, task, model) for agent, model, task, *_ in GRADED]
    run, jobs = ledger.create_run("local", 4, specs, run_id="r0graded")
    for job, (_agent, _model, _task, state, error_class, seconds, score, cost) in zip(jobs, GRADED, strict=True):
        artifacts = ()
        if score is not None:
            path = reports / f"{job.id}_grading_report.json.gz"
            path.write_bytes(gzip.compress(json.dumps({"score": score}).encode()))
            artifacts = (str(path),)
        ledger.transition(job.id, S.STARTING, attempts=1, started_at=T0)
        ledger.transition(job.id, S.RUNNING)
        if state == S.SUCCEEDED:
            ledger.transition(job.id, S.GRADING)
            ledger.transition(job.id, S.UPLOADING)
        ledger.transition(
            job.id,
            state,
            ended_at=T0 + timedelta(seconds=seconds),
            error_class=error_class,
            artifacts=artifacts,
            cost_usd=cost,
        )
    return run.id


# The live resources the resources and teardown snapshots show: a job's tmux session and a stranger's instance.
LIVE_SESSION = Resource(
    "local",
    "tmux-session",
    "r0demo01-002",
    "running",
    "r0demo01",
    "r0demo01-002",
    started_at=T0 + timedelta(seconds=10),
)
FOREIGN_INSTANCE = Resource(
    "ec2",
    "instance",
    "i-0abc123def4567890",
    "running",
    "r0old",
    "r0old-001",
    started_at=T0 - timedelta(hours=3),
    cost_usd=0.52,
)


# -- fixtures (a plugin registered in tests/conftest.py) ----------------------------------------


@pytest.fixture
def quiet_console(monkeypatch) -> None:
    """No user themes or keymap (a fixed config path), and no orphan check (its timed notification)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent/config")
    monkeypatch.setattr("fceval_tui.ui.app.teardown.find_orphans", lambda settings, ledger: [])


@pytest.fixture
def utc(monkeypatch) -> None:
    """Times shown in UTC, whatever the machine's zone (snapshots and views that print clock times)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


@pytest.fixture
def seeded_ledger(state_dir) -> Iterator[Ledger]:
    """A ledger on the fixed clock with `seed`'s run r0demo01 (seven jobs)."""
    ledger = Ledger.open(state_dir, clock=Clock())
    seed(ledger)
    yield ledger
    ledger.close()


@pytest.fixture
def seeded(seeded_ledger, quiet_console, settings_factory):
    """A console over the snapshot data (run r0demo01, seven jobs), with no orphan check."""
    from fceval_tui.ui.app import make_app

    return make_app(settings_factory(), seeded_ledger, clock=fixed())


async def wait_for(pilot, predicate, timeout: float = 60.0, step: float = 0.05) -> None:
    """A bound on waiting for the console, not a speed assertion."""
    for _ in range(int(timeout / step)):
        if predicate():
            return
        await pilot.pause(step)
    raise AssertionError("condition not reached in time")


def text_of(renderable, width: int = 200) -> str:
    """What a renderable shows, as plain text."""
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()
