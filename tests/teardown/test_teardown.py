"""Teardown on the local backend: a run whose console was killed with SIGKILL leaves tmux sessions;
`teardown --orphans` removes every one (the ledger first), a second call finds nothing, and
`--dry-run` changes nothing. A run that is still driven is never an orphan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace

import pytest

from fceval_tui.cli.commands import teardown as teardown_cli
from fceval_tui.ledger import Ledger
from fceval_tui.locations import tmux_socket_name
from fceval_tui.services import teardown
from tests.helpers.cli import HARNESS, run_cli

SLOW_RUN = (
    f"{sys.executable} {HARNESS} agent --agent {{agent}} --task-id {{task_id}} --out {{artifacts_dir}} --seconds 300"
)
TASKS = ("t1", "t2", "t3")


@pytest.fixture
def slow_env():
    return {"FCEVAL_RUN_COMMAND": SLOW_RUN, "FCEVAL_GRADE_COMMAND": "", "FCEVAL_CONCURRENT": str(len(TASKS))}


def sessions(state_dir) -> list[str]:
    proc = subprocess.run(
        ["tmux", "-L", tmux_socket_name(state_dir), "ls", "-F", "#{session_name}"], capture_output=True, text=True
    )
    return sorted(proc.stdout.split())


def wait_for(condition, what: str, limit: float = 60.0):
    """Poll until `condition()` is truthy; the limit only stops a broken run from hanging the suite."""
    deadline = time.monotonic() + limit
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)
    return value


def launch_args(*extra: str) -> list[str]:
    args = [sys.executable, "-m", "fceval_tui", "launch", "--agent", "aide", "--json", *extra]
    for task in TASKS:
        args += ["--task-id", task]
    return args


def jobs_of(state_dir) -> list[dict]:
    res = run_cli("status", "--json", state_dir=state_dir)
    assert res.code == 0, res.err
    return json.loads(res.out)


def event_count(state_dir) -> int:
    ledger = Ledger.open(state_dir)
    try:
        return len(ledger.events())
    finally:
        ledger.close()


def teardown_json(state_dir, *args: str):
    res = run_cli("teardown", *args, "--json", state_dir=state_dir)
    return res.code, json.loads(res.out) if res.out.strip() else None, res.err


def test_killed_console_leaves_sessions_that_teardown_removes(state_dir, slow_env):
    env = {**os.environ, **slow_env}
    console = subprocess.Popen(
        [*launch_args(), "--state-dir", str(state_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = json.loads(console.stdout.readline())["run_id"]
        wait_for(lambda: len(sessions(state_dir)) == len(TASKS), "every job's tmux session")
    finally:
        console.send_signal(signal.SIGKILL)
        console.wait()
    left = sessions(state_dir)
    assert left == [f"{run_id}-{i:03d}" for i in range(1, len(TASKS) + 1)]
    before_states = {j["id"]: j["state"] for j in jobs_of(state_dir)}
    assert not {"succeeded", "failed", "cancelled", "timed_out"} & set(before_states.values())
    events_before = event_count(state_dir)

    code, plan, err = teardown_json(state_dir, "--orphans", "--dry-run")
    assert code == 0, err
    assert plan["dry_run"] is True
    assert sorted(i["id"] for i in plan["plan"]) == left
    assert all(i["action"] == "destroy" and "no live runner" in i["reason"] for i in plan["plan"])
    assert sorted(plan["cancel_jobs"]) == sorted(before_states)
    assert all(i["age_seconds"] is not None and i["cost_usd"] == 0 for i in plan["plan"])
    # Dry run: the sessions, the jobs' states and the ledger's events are exactly as before.
    assert sessions(state_dir) == left
    assert {j["id"]: j["state"] for j in jobs_of(state_dir)} == before_states
    assert event_count(state_dir) == events_before

    code, result, err = teardown_json(state_dir, "--orphans", "--yes")
    assert code == 0, err
    assert result["clean"] is True and result["left"] == [] and result["failed"] == []
    assert sorted(result["destroyed"]) == left
    assert sessions(state_dir) == []
    assert {j["state"] for j in jobs_of(state_dir)} == {"cancelled"}
    ledger = Ledger.open(state_dir)
    events = ledger.events(run_id=run_id)
    kinds = [e.kind for e in events]
    ledger.close()
    assert kinds.count("teardown_destroy") == len(TASKS) and kinds.count("teardown_done") == len(TASKS)
    # Each teardown action is logged once, with who did it (the local user here: no AWS in play).
    acts = [e for e in events if e.kind in ("teardown_destroy", "operator_cancel")]
    assert acts and all("@" in e.detail.get("by", "") for e in acts), [e.detail for e in acts]

    code, again, err = teardown_json(state_dir, "--orphans", "--yes")
    assert code == 0, err
    assert again["plan"] == [] and again["cancel_jobs"] == [] and again["kept"] == []


def test_a_driven_run_is_not_an_orphan_but_run_scope_removes_it(state_dir, slow_env):
    res = run_cli(
        "launch",
        "--agent",
        "aide",
        *[a for t in TASKS for a in ("--task-id", t)],
        "--detach",
        "--json",
        state_dir=state_dir,
        env=slow_env,
    )
    assert res.code == 0, res.err
    run_id = json.loads(res.out.splitlines()[0])["run_id"]
    ledger = Ledger.open(state_dir)
    runner = ledger.run_owner(run_id)
    try:
        assert runner is not None
        wait_for(lambda: len(sessions(state_dir)) == len(TASKS), "every job's tmux session")
        code, plan, err = teardown_json(state_dir, "--orphans", "--dry-run")
        assert code == 0, err
        assert plan["plan"] == [] and len(plan["kept"]) == len(TASKS)
        assert all(f"driven by process {runner}" in k["reason"] for k in plan["kept"])

        code, result, err = teardown_json(state_dir, "--run", run_id, "--yes")
        assert code == 0, err
        assert result["clean"] and sessions(state_dir) == []
        assert {j.state.value for j in ledger.jobs(run_id=run_id)} == {"cancelled"}
    finally:
        if ledger.run_owner(run_id):
            os.kill(runner, signal.SIGKILL)
        ledger.close()


def test_interactive_confirmation_needs_the_typed_run_id(state_dir, settings_factory, ledger, monkeypatch, capsys):
    run, _jobs = ledger.create_run("local", 1, [])
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")  # not the run id
    args = Namespace(run=run.id, orphans=False, all=False, dry_run=False, yes=False, json=False)
    settings = settings_factory()
    # Nothing to do yet: no confirmation asked, exit 0.
    assert teardown_cli.tear_down(args, settings, ledger) == 0
    assert "nothing to tear down" in capsys.readouterr().out
    session = f"{run.id}-001"
    subprocess.run(
        ["tmux", "-L", tmux_socket_name(state_dir), "new-session", "-d", "-s", session, "sleep 300"], check=True
    )
    assert teardown_cli.tear_down(args, settings, ledger) == 1
    assert "not confirmed" in capsys.readouterr().err and sessions(state_dir) == [session]
    monkeypatch.setattr("builtins.input", lambda prompt: run.id)
    assert teardown_cli.tear_down(args, settings, ledger) == 0
    assert sessions(state_dir) == []


def test_cli_refuses_without_confirmation_in_scripts(state_dir):
    res = run_cli("teardown", "--orphans", state_dir=state_dir)
    assert res.code == 2 and "--yes" in res.err


def test_ledger_entry_whose_session_is_gone_is_marked_cancelled(state_dir, settings_factory, ledger):
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState

    run, jobs = ledger.create_run("local", 2, [JobSpec("aide", "gone"), JobSpec("aide", "never-started")])
    ledger.transition(jobs[0].id, JobState.STARTING, resource_id=jobs[0].id, attempts=1)
    ledger.transition(jobs[0].id, JobState.RUNNING)  # the ledger says running; no tmux session exists
    settings = settings_factory()
    plan = teardown.make_plan(settings, ledger, teardown.Scope.orphans())
    assert [(i.action, i.resource.kind, i.resource.id) for i in plan.items] == [
        ("mark-cancelled", "ledger-entry", jobs[0].id)
    ]
    assert f"{jobs[0].id} is gone" in plan.items[0].reason
    assert plan.cancel_job_ids == [jobs[0].id]  # a job that never got compute is left for `resume`
    result = teardown.execute(settings, ledger, plan)
    assert result.clean and result.cancelled == [jobs[0].id]
    assert ledger.get_job(jobs[0].id).state is JobState.CANCELLED
    assert ledger.get_job(jobs[1].id).state is JobState.PENDING
    assert not teardown.make_plan(settings, ledger, teardown.Scope.orphans()).actionable


def test_a_selection_cancels_only_the_jobs_of_what_is_chosen(state_dir, settings_factory, ledger):
    from fceval_tui.domain.models import JobSpec
    from fceval_tui.domain.states import JobState

    run, jobs = ledger.create_run("local", 2, [JobSpec("aide", "a"), JobSpec("aide", "b")])
    for job in jobs:
        ledger.transition(job.id, JobState.STARTING, resource_id=job.id, attempts=1)
        subprocess.run(
            ["tmux", "-L", tmux_socket_name(state_dir), "new-session", "-d", "-s", job.id, "sleep 300"], check=True
        )
    settings = settings_factory()
    plan = teardown.make_plan(settings, ledger, teardown.Scope.orphans())
    assert sorted(plan.cancel_job_ids) == [j.id for j in jobs]
    first = next(i for i in plan.items if i.resource.id == jobs[0].id)
    chosen = plan.subset([first.key])
    assert [i.resource.id for i in chosen.items] == [jobs[0].id] and chosen.cancel_job_ids == [jobs[0].id]
    assert teardown.execute(settings, ledger, chosen).clean
    assert sessions(state_dir) == [jobs[1].id]
    assert ledger.get_job(jobs[1].id).state is JobState.STARTING
