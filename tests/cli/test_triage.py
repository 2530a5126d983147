"""Every unsuccessful job carries an error class; `retry --error CLASS` re-queues only that class."""

from __future__ import annotations

import json
import time

from fceval_tui.domain.models import JobSpec
from fceval_tui.domain.states import JobState
from tests.helpers.cli import run_cli


def test_failed_steps_are_classified_by_what_failed(state_dir, fast_env):
    env = dict(fast_env, FCEVAL_GRADE_COMMAND="false")
    res = run_cli("launch", "--task-id", "a", "--task-id", "b", "--agent", "x", "--json", state_dir=state_dir, env=env)
    assert res.code == 1
    jobs = json.loads(
        run_cli("status", json.loads(res.out.splitlines()[0])["run_id"], "--json", state_dir=state_dir).out
    )
    assert {(j["state"], j["error_class"]) for j in jobs} == {("failed", "grading")}
    env = dict(fast_env, FCEVAL_RUN_COMMAND="false")
    res = run_cli("launch", "--task-id", "c", "--agent", "x", "--json", state_dir=state_dir, env=env)
    run_id = json.loads(res.out.splitlines()[0])["run_id"]
    (job,) = json.loads(run_cli("status", run_id, "--json", state_dir=state_dir).out)
    assert (job["state"], job["error_class"]) == ("failed", "harness_exit")


def test_retry_by_error_class_requeues_only_that_class(ledger, state_dir, settings_factory):
    settings = settings_factory()
    run, jobs = ledger.create_run("local", 2, [JobSpec("a", f"t{i}") for i in range(3)], settings=settings.to_json())
    for job, error_class in zip(jobs, ("capacity", "harness_exit", "capacity"), strict=True):
        ledger.transition(job.id, JobState.PROVISIONING, attempts=1)
        ledger.transition(job.id, JobState.FAILED, error="x", error_class=error_class)
    bad = run_cli("retry", "--run", run.id, "--error", "space-weather", state_dir=state_dir)
    assert bad.code == 2 and "known: capacity, throttling" in bad.err
    res = run_cli("retry", "--run", run.id, "--error", "capacity", "--json", state_dir=state_dir)
    assert res.code == 0, res.err
    reply = json.loads(res.out)
    assert reply["retried"] == [jobs[0].id, jobs[2].id] and reply["runner_pid"]
    assert ledger.get_job(jobs[1].id).state == JobState.FAILED  # another class: left alone
    logged = [(e.job_id, e.detail["error_class"]) for e in ledger.events(run_id=run.id) if e.kind == "operator_retry"]
    assert logged == [(jobs[0].id, "capacity"), (jobs[2].id, "capacity")]
    deadline = time.monotonic() + 60
    while any(not ledger.get_job(j.id).state.is_final for j in (jobs[0], jobs[2])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [ledger.get_job(j.id).state for j in jobs] == [JobState.SUCCEEDED, JobState.FAILED, JobState.SUCCEEDED]
    assert ledger.get_job(jobs[0].id).error_class is None


def test_a_cancel_is_logged_with_who_did_it(ledger, state_dir):
    run, jobs = ledger.create_run("local", 1, [JobSpec("a", "t")])
    res = run_cli("cancel", "--run", run.id, "--json", state_dir=state_dir)
    assert json.loads(res.out) == {"cancelled": [jobs[0].id]}
    (event,) = [e for e in ledger.events(run_id=run.id) if e.kind == "operator_cancel"]
    assert "@" in event.detail["by"] and ledger.get_job(jobs[0].id).error_class == "cancelled"


def test_retry_of_a_job_the_run_does_not_have_says_so(ledger, state_dir):
    run, (job,) = ledger.create_run("local", 1, [JobSpec("a", "t")])
    res = run_cli("retry", "--run", run.id, "--job", "r0-typo", "--job", job.id, state_dir=state_dir)
    assert res.code == 2 and f"run {run.id} has no job 'r0-typo'" in res.err and "Traceback" not in res.err
    assert ledger.get_job(job.id).state == JobState.PENDING
