import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from fceval_tui.domain.models import JobSpec
from fceval_tui.domain.states import IllegalTransition, JobState
from fceval_tui.ledger import Ledger
from fceval_tui.ledger_schema import SCHEMA_VERSION


def _run(ledger, n=2):
    return ledger.create_run("local", 2, [JobSpec("aide", f"t{i}") for i in range(n)])


def test_wal_schema_version_and_events(ledger):
    run, jobs = _run(ledger)
    assert ledger.schema_version == SCHEMA_VERSION
    mode = sqlite3.connect(ledger.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    job = ledger.transition(jobs[0].id, JobState.STARTING, attempts=1)
    assert job.state == JobState.STARTING and job.attempts == 1
    kinds = [(e.kind, e.from_state, e.to_state) for e in ledger.events(job_id=jobs[0].id)]
    assert kinds == [("job_created", None, "pending"), ("state", "pending", "starting")]


def test_illegal_transitions_are_refused_and_not_written(ledger):
    _, jobs = _run(ledger)
    with pytest.raises(IllegalTransition):
        ledger.transition(jobs[0].id, JobState.SUCCEEDED)
    with pytest.raises(IllegalTransition):  # stale expectation: someone else moved it
        ledger.transition(jobs[0].id, JobState.STARTING, expect=JobState.RUNNING)
    assert ledger.get_job(jobs[0].id).state == JobState.PENDING
    assert [e.kind for e in ledger.events(job_id=jobs[0].id)] == ["job_created"]


def test_events_are_append_only(ledger):
    _run(ledger)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        ledger._db.execute("DELETE FROM events")


def test_incremental_change_cursor(ledger):
    _, jobs = _run(ledger, 3)
    _, cursor = ledger.jobs_changed_since(0)
    ledger.transition(jobs[1].id, JobState.STARTING)
    changed, cursor2 = ledger.jobs_changed_since(cursor)
    assert [j.id for j in changed] == [jobs[1].id] and cursor2 > cursor
    assert ledger.jobs_changed_since(cursor2)[0] == []


def test_migration_from_an_empty_older_file(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    sqlite3.connect(path).close()  # version 0
    s = Ledger(path)
    assert s.schema_version == SCHEMA_VERSION
    s.close()


def test_newer_schema_is_refused(tmp_path):
    from fceval_tui.errors import StateDirError

    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    db.close()
    with pytest.raises(StateDirError, match="newer fceval-tui"):
        Ledger(path)


def test_kill_9_loses_no_reported_event(state_dir):
    """A child writes transitions and reports each one after commit; we SIGKILL it mid-stream."""
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from fceval_tui.ledger import Ledger
        from fceval_tui.domain.models import JobSpec
        from fceval_tui.domain.states import JobState
        s = Ledger.open(Path({str(state_dir)!r}))
        run, jobs = s.create_run("local", 1, [JobSpec("a", f"t{{i}}") for i in range(2000)])
        for job in jobs:
            s.transition(job.id, JobState.STARTING)
            print(job.id, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    reported = []
    for line in proc.stdout:
        reported.append(line.strip())
        if len(reported) == 300:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    reported.extend(line.strip() for line in proc.stdout)
    s = Ledger.open(state_dir)
    started = {j.id for j in s.jobs(states=[JobState.STARTING])}
    assert set(reported) <= started
    events = {e.job_id for e in s.events() if e.kind == "state"}
    assert events == started  # state and event always written together
    s.close()


def _own_start_time() -> int:
    from fceval_tui.ledger import process_start_time

    started = process_start_time(os.getpid())
    if started is None:
        pytest.skip("no /proc: process start times are not available here")
    return started


def _set_owner(ledger, run_id, pid, started):
    import socket

    ledger._db.execute(
        "UPDATE runs SET owner_pid=?, owner_host=?, owner_started=? WHERE id=?",
        (pid, socket.gethostname(), started, run_id),
    )


def test_a_live_pid_with_another_start_time_is_a_dead_runner(ledger):
    """After a `kill -9` the runner's pid may be reused: only the same pid *and* start time is its runner."""
    started = _own_start_time()
    run, _ = _run(ledger)
    _set_owner(ledger, run.id, os.getpid(), started + 1)
    assert ledger.run_owner(run.id) is None
    _set_owner(ledger, run.id, os.getpid(), started)
    assert ledger.run_owner(run.id) == os.getpid()


def test_claim_refuses_a_live_runner_and_takes_over_a_reused_pid(ledger):
    from fceval_tui.errors import UserError
    from fceval_tui.ledger import process_start_time

    _own_start_time()
    run, _ = _run(ledger)
    other = subprocess.Popen(["sleep", "60"])
    try:
        started = process_start_time(other.pid)
        _set_owner(ledger, run.id, other.pid, started)
        with pytest.raises(UserError, match=f"already being driven by process {other.pid}"):
            ledger.claim_run(run.id)
        _set_owner(ledger, run.id, other.pid, started - 1)  # same pid, another process: the runner died
        ledger.claim_run(run.id)
        assert ledger.run_owner(run.id) == os.getpid()
    finally:
        other.kill()
        other.wait()


def test_a_killed_runner_not_yet_reaped_is_dead(ledger, state_dir):
    """A runner killed with SIGKILL stays a zombie until its parent reaps it; resume must not wait for that."""
    _own_start_time()
    run, _ = _run(ledger)
    claim = (
        "import sys, time\nfrom pathlib import Path\nfrom fceval_tui.ledger import Ledger\n"
        "Ledger.open(Path(sys.argv[1])).claim_run(sys.argv[2])\nprint('claimed', flush=True)\ntime.sleep(300)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", claim, str(state_dir), run.id], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "claimed"
        assert ledger.run_owner(run.id) == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, still unreaped
        assert ledger.run_owner(run.id) is None
        ledger.claim_run(run.id)
    finally:
        proc.kill()
        proc.wait()


def test_migration_keeps_a_version_1_ledger(tmp_path):
    from fceval_tui.ledger import _statements
    from fceval_tui.ledger_schema import MIGRATIONS

    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in _statements(MIGRATIONS[0]):
        db.execute(statement)
    db.execute(
        "INSERT INTO runs(id, created_at, backend, concurrency, owner_pid, owner_host)"
        " VALUES ('r1', '2024-01-01T00:00:00Z', 'local', 2, 1, 'elsewhere')"
    )
    db.execute("PRAGMA user_version=1")
    db.close()
    s = Ledger(path)
    try:
        assert s.schema_version == SCHEMA_VERSION
        assert s.get_run("r1").backend == "local" and s.run_owner("r1") is None
        s.claim_run("r1")
        assert s.run_owner("r1") == os.getpid()
    finally:
        s.close()


def test_a_jobs_cost_is_the_sum_of_its_attempts_and_a_retry_keeps_it(ledger):
    from fceval_tui.domain.models import JobSpec

    _, (job,) = ledger.create_run("ec2", 1, [JobSpec("a", "t")])
    ledger.set_attempt_cost(job.id, 1, 0.25)
    ledger.set_attempt_cost(job.id, 1, 0.5)  # the same attempt, later: replaced
    assert ledger.get_job(job.id).cost_usd == 0.5
    ledger.set_attempt_cost(job.id, 2, 0.125)
    assert ledger.get_job(job.id).cost_usd == 0.625
    assert ledger.attempt_costs(job.id) == {1: 0.5, 2: 0.125}


def test_a_runs_summary_carries_its_running_cost(ledger):
    from fceval_tui.domain.models import JobSpec

    run, jobs = ledger.create_run("ec2", 2, [JobSpec("a", "t1"), JobSpec("a", "t2")])
    ledger.set_attempt_cost(jobs[0].id, 1, 0.5)
    ledger.set_attempt_cost(jobs[1].id, 1, 0.25)
    ledger.set_attempt_cost(jobs[1].id, 2, 0.125)
    (summary,) = [s for s in ledger.run_summaries() if s.run.id == run.id]
    assert summary.cost_usd == 0.875


def test_each_attempt_keeps_when_it_ran_and_its_price_across_a_retry(state_dir):
    from datetime import UTC, datetime, timedelta

    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.prices import HourlyPrice, PriceSource

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ledger = Ledger.open(state_dir, clock=lambda: t0 + timedelta(hours=5))
    try:
        run, (job,) = ledger.create_run("ec2", 1, [JobSpec("a", "t")])
        ledger.transition(job.id, JobState.PROVISIONING, attempts=1, started_at=t0)
        ledger.set_attempt_price(job.id, 1, HourlyPrice(0.0312, PriceSource.SPOT_HISTORY))
        ledger.set_attempt_price(job.id, 2, None)  # no better price known: nothing recorded
        ledger.set_attempt_cost(job.id, 1, 0.0156, until=t0 + timedelta(minutes=30))
        ledger.transition(job.id, JobState.FAILED)
        ledger.transition(job.id, JobState.PENDING)
        ledger.transition(job.id, JobState.PROVISIONING, attempts=2, started_at=t0 + timedelta(hours=1))
        ledger.set_attempt_cost(job.id, 2, 0.25)  # billed now (the ledger's clock)
        first, second = ledger.run_attempt_costs(run.id)
        assert (first.attempt, first.started_at, first.billed_until) == (1, t0, t0 + timedelta(minutes=30))
        assert (first.hourly_usd, first.price_source, first.cost_usd) == (0.0312, "spot price at launch", 0.0156)
        assert (second.started_at, second.billed_until) == (t0 + timedelta(hours=1), t0 + timedelta(hours=5))
        assert (second.hourly_usd, second.price_source) == (None, None)
        assert ledger.attempt_hourly(job.id, 1) == 0.0312 and ledger.attempt_hourly(job.id, 2) is None
        assert ledger.attempt_costs(job.id) == {1: 0.0156, 2: 0.25}
        (price,) = [e for e in ledger.events(run_id=run.id) if e.kind == "attempt_price"]
        assert price.detail == {"attempt": 1, "hourly_usd": 0.0312, "source": "spot price at launch"}
    finally:
        ledger.close()


def test_migration_gives_a_version_4_ledger_the_times_of_each_jobs_last_attempt(tmp_path):
    from fceval_tui.ledger import _statements
    from fceval_tui.ledger_schema import MIGRATIONS

    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:4]:
        for statement in _statements(migration):
            db.execute(statement)
    db.execute("INSERT INTO runs(id, created_at, backend, concurrency) VALUES ('r1', '2024-01-01T00:00:00Z', 'ec2', 1)")
    db.execute(
        "INSERT INTO jobs(id, run_id, seq, agent, task_id, backend, state, attempts, started_at, ended_at, cost_usd)"
        " VALUES ('r1-001', 'r1', 1, 'a', 't', 'ec2', 'failed', 2, '2024-01-01T01:00:00Z', '2024-01-01T02:00:00Z', 0.3)"
    )
    db.execute("INSERT INTO attempt_costs VALUES ('r1-001', 1, 0.1), ('r1-001', 2, 0.2)")
    db.execute("PRAGMA user_version=4")
    db.close()
    s = Ledger(path)
    try:
        first, second = s.run_attempt_costs("r1")
        assert (first.started_at, first.billed_until) == (None, None)  # never recorded: unknown, not guessed
        assert (str(second.started_at), str(second.billed_until)) == (
            "2024-01-01 01:00:00+00:00",
            "2024-01-01 02:00:00+00:00",
        )
    finally:
        s.close()
