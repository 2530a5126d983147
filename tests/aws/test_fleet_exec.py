"""`fceval-tui exec`: one command on every machine of a run, a pool or some jobs, through the SSM double
(tests/helpers/ssm_double.py: Run Command with at most 50 targets a call, ListCommandInvocations, each
instance its own directory)."""

from __future__ import annotations

import json
import secrets

import pytest

from fceval_tui.backends.aws_constants import MANAGED_BY, MANAGED_BY_TAG, POOL_TAG
from fceval_tui.domain.models import JobSpec
from tests.helpers.cli import run_cli
from tests.helpers.fleet import instances, running_jobs

# Each instance answers from its own directory: `broken` makes it fail with its text, `warn` adds stderr.
COMMAND = (
    "echo ran >> ran; if [ -f broken ]; then cat broken; exit 1; fi; "
    'if [ -f warn ]; then echo "$(cat warn)" >&2; exit 2; fi; echo ok'
)


def _running_run(world, ledger, count: int) -> tuple[str, dict[str, str]]:
    """A run of `count` running jobs, each on an instance of its own: (run id, job id -> instance id)."""
    jobs = running_jobs(world, ledger, count)
    return jobs[0].run_id, {job.id: job.resource_id for job in jobs}


def _exec_events(state_dir) -> list[dict]:
    events = json.loads(run_cli("events", "--json", state_dir=state_dir).out)
    return [e for e in events if e["kind"] == "operator_exec"]


def test_exec_on_60_instances_makes_two_run_commands_and_groups_the_answers(aws_env, ssm_fleet, ledger, state_dir):
    run_id, machines = _running_run(aws_env, ledger, 60)
    ids = list(machines.values())
    broken, warned = ids[7:10], ids[40:42]
    for instance_id in broken:
        (ssm_fleet.instance_dir(instance_id) / "broken").write_text("disk full\n")
    for instance_id in warned:
        (ssm_fleet.instance_dir(instance_id) / "warn").write_text("swap low")

    res = run_cli("exec", "--run", run_id, "--json", "--", COMMAND, state_dir=state_dir)

    assert res.code == 1, res.err  # some machines failed
    assert sorted(len(ids) for ids in ssm_fleet.sends) == [10, 50]  # two SendCommand calls, none over 50
    assert sorted(i for call in ssm_fleet.sends for i in call) == sorted(ids)
    for instance_id in ids:  # every instance ran it once
        assert (ssm_fleet.instance_dir(instance_id) / "ran").read_text() == "ran\n"
    report = json.loads(res.out)
    groups = [(g["count"], g["result"], g["output"], sorted(g["machines"])) for g in report["groups"]]
    assert groups == [
        (55, "ok", "ok\n", sorted(set(ids) - set(broken) - set(warned))),
        (3, "exit 1", "disk full\n", sorted(broken)),
        (2, "exit 2", "\n----------ERROR-------\nswap low\n", sorted(warned)),
    ]
    assert len(report["command_ids"]) == 2 and report["ok"] is False
    by_machine = {r["machine"]: r for r in report["results"]}
    assert {job for r in by_machine.values() for job in r["jobs"]} == set(machines)

    [event] = _exec_events(state_dir)
    detail = event["detail"]
    assert event["run_id"] == run_id and "@" in detail["by"] and detail["command"] == COMMAND
    assert detail["targets"] == {i: 1 if i in broken else 2 if i in warned else 0 for i in ids}
    assert "disk full" not in json.dumps(event) and "swap low" not in json.dumps(event)  # never the output


def test_exec_prints_groups_and_reports_an_instance_ssm_cannot_reach(aws_env, ssm_fleet, ledger, state_dir):
    run_id, machines = _running_run(aws_env, ledger, 5)
    gone = list(machines.values())[2]
    aws_env.client("ec2").terminate_instances(InstanceIds=[gone])  # the ledger still says running

    res = run_cli("exec", "--run", run_id, "--", "echo", "hello world", state_dir=state_dir)

    assert res.code == 1
    # AWS refuses the whole call for one bad id; the batch is narrowed and sent again without it.
    assert [len(call) for call in ssm_fleet.sends] == [5, 4]
    assert ssm_fleet.commands == ["echo 'hello world'"]  # several words: each quoted
    assert "4 instances: ok" in res.out and "hello world" in res.out
    assert f"1 instance: unreachable  {gone}" in res.out
    assert gone in res.err and "unreachable" in res.err  # the per-machine progress lines
    [event] = _exec_events(state_dir)
    assert event["detail"]["targets"][gone] == "unreachable"


def test_exec_on_a_pool_reaches_its_tagged_instances_only(aws_env, ssm_fleet, ledger, state_dir):
    pool = "p" + secrets.token_hex(4)
    members = instances(aws_env, 3, {MANAGED_BY_TAG: MANAGED_BY, POOL_TAG: pool})
    instances(aws_env, 2, {MANAGED_BY_TAG: MANAGED_BY, POOL_TAG: pool + "-other"})

    res = run_cli("exec", "--pool", pool, "--json", "--", "echo up", state_dir=state_dir)

    assert res.code == 0, res.err
    assert sorted(ssm_fleet.sends[0]) == sorted(members) and len(ssm_fleet.sends) == 1
    assert json.loads(res.out)["groups"][0]["count"] == 3
    [event] = _exec_events(state_dir)
    assert event["run_id"] == f"pool:{pool}" and set(event["detail"]["targets"]) == set(members)


@pytest.mark.parametrize("bad", ["x; touch {tmp}/pwned", "$(touch {tmp}/pwned)", "../r1", "r1 -002"])
def test_a_hostile_job_id_is_refused_in_one_line(bad, tmp_path, state_dir):
    job = bad.format(tmp=tmp_path)
    res = run_cli("exec", job, "--", "true", state_dir=state_dir)
    assert res.code == 2 and res.err.count("\n") == 1 and "Traceback" not in res.err, res.err
    assert "job id" in res.err
    assert not (tmp_path / "pwned").exists()


def test_exec_usage_errors_name_the_fix(ledger, state_dir):
    run, _ = ledger.create_run("local", 1, [JobSpec("a", "t")])
    for argv, says in [
        (["exec", "--run", run.id, "uptime"], "put it after `--`"),
        (["exec", "--run", run.id, "--"], "is empty"),
        (["exec", "--run", run.id, "r1-001", "--", "uptime"], "name the machines once"),
        (["exec", "--run", run.id, "--", "uptime"], "runs on this machine"),
        (["exec", "--pool", "a b", "--", "uptime"], "not a valid pool name"),
    ]:
        res = run_cli(*argv, state_dir=state_dir)
        assert res.code == 2 and says in res.err and "Traceback" not in res.err, (argv, res.err)


def test_exec_on_a_run_it_cannot_reach_gives_each_reason_once(ledger, state_dir):
    run, _ = ledger.create_run("local", 1, [JobSpec("a", f"t{n}") for n in range(6)])
    res = run_cli("exec", "--run", run.id, "--", "uptime", state_dir=state_dir)
    assert res.code == 2 and res.err.count("runs on this machine") == 1, res.err
    assert f"{run.id}-001 and 5 more runs on this machine" in res.err


def test_exec_on_ecs_jobs_runs_in_each_task_through_ecs_exec(aws_settings, ecs_exec, aws_env, ledger):
    from fceval_tui.backends.ecs import EcsBackend
    from fceval_tui.presentation import render_exec
    from fceval_tui.services.fleet_exec import run_on_fleet
    from fceval_tui.services.fleet_targets import select_jobs
    from tests.helpers.aws import make_context, new_run_id

    settings = aws_settings(FCEVAL_RUN_COMMAND="sleep 60")
    backend = EcsBackend(settings)
    backend.poll_interval = 0.05
    run_id = new_run_id()
    contexts = [make_context(settings, run_id, seq=n, backend="ecs") for n in (1, 2)]
    tasks = [backend.provision(ctx) for ctx in contexts]
    try:
        for ctx, task in zip(contexts, tasks, strict=True):
            backend.start(ctx, task)
        jobs = running_jobs(aws_env, ledger, 2, backend="ecs", resources=tasks)
        selection = select_jobs(ledger, run_id=jobs[0].run_id)
        report = run_on_fleet(settings, selection, "echo from the container; exit 4")
    finally:
        for ctx, task in zip(contexts, tasks, strict=True):
            backend.cleanup(ctx, task)
    [group] = report.groups()
    assert (len(group.results), group.label, group.output.strip()) == (2, "exit 4", "from the container")
    assert sorted(r.machine.id for r in group.results) == sorted(tasks)
    assert "2 tasks: exit 4" in str(render_exec(report).renderables[0])
    assert len(ecs_exec.exec_calls()) == 2 and report.command_ids == []
