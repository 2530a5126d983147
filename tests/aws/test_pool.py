"""Warm pools on the moto server and the SSM doubles (tests/helpers/ssm_double.py): instances booted once
by `pool up`, jobs run on their slots (each as its own Unix user), cleaned up between jobs, and ended by
`pool down` and teardown. All instances of a test share the double's one "machine" (this host, as root),
so each job's user, work directory and processes are real and checked here."""

from __future__ import annotations

import collections
import pwd
import subprocess
from pathlib import Path

import pytest

from fceval_tui.backends import pool_scripts
from fceval_tui.backends.ec2_pool import Ec2PoolBackend
from fceval_tui.domain.states import JobState
from fceval_tui.ledger_pools import GONE, READY, PoolBook
from fceval_tui.services import pool as pools
from fceval_tui.services.runner import Runner
from tests.helpers.aws import RESULTS, record_calls, s3_keys, spec
from tests.helpers.pools import PYTHON, harness, pool_instances, wait_for

pytestmark = pytest.mark.skipif(PYTHON is None, reason="no Python that an unprivileged job user can run")


def _no_trace_of(job_id: str, work_root: str) -> None:
    user = pool_scripts.job_user(job_id)
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    assert not (Path(work_root) / job_id).exists()
    assert not Path(pool_scripts.user_dir(f"{work_root}/{job_id}")).exists()


def test_a_pool_of_3_runs_9_jobs_with_no_boot_after_the_first(pool_env, aws_env):
    make, ledger, name = pool_env
    settings = make()
    status = pools.pool_up(settings, ledger, name, 3)
    assert status.ready == 3 and status.slots == 3
    booted = {i["InstanceId"] for i in pool_instances(aws_env, name)}
    assert booted == {r.instance.id for r in status.rows}

    run_settings = pools.settings_for_run(settings.replace(pool=name), ledger)
    assert run_settings.backend == "ec2" and run_settings.concurrent == 3
    backend = Ec2PoolBackend(run_settings, ledger=ledger)
    backend.poll_interval = 0.05
    calls = record_calls([backend.aws.ec2, backend.aws.ssm])
    runner = Runner(ledger, run_settings, backend, backoff_base=0.01)
    run, _ = runner.create_run([spec(f"task{i}") for i in range(9)])
    runner.run(run.id)

    jobs = ledger.jobs(run_id=run.id)
    why = [(j.id, j.state, j.error) for j in jobs], PoolBook(ledger).instances(name, live=False)
    assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 9, why
    assert calls.named("RunInstances") == []  # no boot after the pool's
    assert {i["InstanceId"] for i in pool_instances(aws_env, name)} == booted
    per_instance = collections.Counter(j.resource_id for j in jobs)
    assert set(per_instance) == booted and sorted(per_instance.values()) == [3, 3, 3], per_instance
    for job in jobs:
        assert job.artifacts[0] == f"s3://{RESULTS}/evals/runs/aide/{job.task_id}/{run.id}.tar.gz"
        assert s3_keys(aws_env, RESULTS, f"evals/runs/aide/{job.task_id}/{run.id}")
        _no_trace_of(job.id, settings.remote_work_dir)
    after = PoolBook(ledger).instances(name)
    assert [(i.state, i.jobs) for i in after] == [(READY, ())] * 3  # every slot free again, nothing drained
    assert all(i.idle_since is not None for i in after)


def test_pool_down_waits_for_termination_and_leaves_nothing(pool_env, aws_env):
    make, ledger, name = pool_env
    settings = make()
    status = pools.pool_up(settings, ledger, name, 2)
    ids = sorted(r.instance.id for r in status.rows)
    ended = pools.pool_down(settings, ledger, name)
    assert sorted(ended) == ids
    assert pool_instances(aws_env, name, ("pending", "running", "shutting-down", "stopping", "stopped")) == []
    assert [i.state for i in PoolBook(ledger).instances(name, live=False)] == [GONE, GONE]
    assert not PoolBook(ledger).pool(name).up


def _user_pids(job_id: str) -> list[str]:
    """The live processes of the job's user. Zombies do not count: useradd gives the next job the uid the
    last one freed, and init reaps that job's killed orphans only every second or two here, so a zombie of
    the same uid is no sign that this job's harness runs."""
    user = pool_scripts.job_user(job_id)
    proc = subprocess.run(["ps", "-u", user, "-o", "pid=,stat="], capture_output=True, text=True)
    return [pid for pid, stat in (line.split() for line in proc.stdout.splitlines()) if not stat.startswith("Z")]


def test_a_job_killed_mid_run_leaves_its_instance_reusable(pool_env, aws_env):
    """One instance, one slot: the first job is cancelled mid-run, the second's harness is killed under it
    (as the OOM killer would), and the third still runs on the same, clean instance."""
    import threading

    from fceval_tui.services.job_actions import cancel_jobs

    make, ledger, name = pool_env
    slow_first = "case {task_id} in slow*) echo started; sleep 120 ;; esac; " + harness("agent")
    settings = make(FCEVAL_RUN_COMMAND=slow_first)
    (instance,) = [r.instance for r in pools.pool_up(settings, ledger, name, 1).rows]
    run_settings = pools.settings_for_run(settings.replace(pool=name), ledger)
    backend = Ec2PoolBackend(run_settings, ledger=ledger)
    backend.poll_interval = 0.05
    calls = record_calls([backend.aws.ec2])
    runner = Runner(ledger, run_settings, backend, backoff_base=0.01)
    run, (cancelled, killed, last) = runner.create_run([spec("slow-cancel"), spec("slow-kill"), spec("quick")])
    driver = threading.Thread(target=runner.run, args=(run.id,))
    driver.start()
    try:
        wait_for(lambda: _user_pids(cancelled.id), "the first job's harness runs as its user")
        cancel_jobs(ledger, run_settings, [cancelled.id])
        _no_trace_of(cancelled.id, settings.remote_work_dir)
        pids = wait_for(lambda: _user_pids(killed.id), "the second job's harness runs as its user")
        subprocess.run(["kill", "-KILL", *pids], check=True)
    finally:
        driver.join(timeout=120)
    assert not driver.is_alive()
    jobs = {j.id: j for j in ledger.jobs(run_id=run.id)}
    assert jobs[cancelled.id].state == JobState.CANCELLED
    assert jobs[killed.id].state == JobState.FAILED and jobs[killed.id].exit_code == 137, jobs[killed.id]
    assert jobs[last.id].state == JobState.SUCCEEDED, jobs[last.id]
    assert {j.resource_id for j in jobs.values()} == {instance.id}
    assert calls.named("RunInstances") == []
    for job_id in jobs:
        _no_trace_of(job_id, settings.remote_work_dir)
        assert not _user_pids(job_id)
    (after,) = PoolBook(ledger).instances(name)
    assert (after.state, after.jobs) == (READY, ())


def test_teardown_knows_pools(pool_env, aws_env):
    """--orphans keeps a warm pool that is up (it ends itself) and a run's teardown leaves the shared pool;
    --all ends it, marks it down so nothing relaunches it, and leaves nothing."""
    from fceval_tui.services import teardown

    make, ledger, name = pool_env
    settings = make()
    (instance,) = [r.instance for r in pools.pool_up(settings, ledger, name, 1).rows]

    def items(scope):
        plan = teardown.make_plan(settings, ledger, scope)
        return plan, {i.resource.id: i for i in plan.items + plan.kept}

    _, orphans = items(teardown.Scope.orphans())
    assert orphans[instance.id].action == teardown.KEEP
    assert f"warm pool {name}" in orphans[instance.id].reason and "pool down" in orphans[instance.id].reason
    run_settings = pools.settings_for_run(settings.replace(pool=name), ledger)
    run, _ = Runner(ledger, run_settings).create_run([spec("t")])
    _, of_run = items(teardown.Scope.run(run.id))
    assert instance.id not in of_run

    plan, everything = items(teardown.Scope.all())
    assert everything[instance.id].action == teardown.DESTROY
    result = teardown.execute(settings, ledger, plan, settle_seconds=30)
    assert result.clean, result.to_json()
    assert pool_instances(aws_env, name, ("pending", "running", "stopping", "stopped")) == []
    assert not PoolBook(ledger).pool(name).up
    assert [i.state for i in PoolBook(ledger).instances(name, live=False)] == [GONE]


def test_an_instance_whose_agent_goes_offline_is_drained_and_replaced(pool_env, aws_env, ec2_machine):
    """Its agent lost mid-job: the job still ends well (its status and results travel through S3, not
    the agent), but its cleanup cannot reach the instance, so it is drained (no new job), terminated once
    no job of the ledger is active on it, and a new instance takes its place."""
    import threading

    make, ledger, name = pool_env
    share = ec2_machine.root / "share"
    share.mkdir(mode=0o755)
    release = share / "release"
    settings = make(
        FCEVAL_RUN_COMMAND=f"case {{task_id}} in slow) until [ -e {release} ]; do sleep 0.1; done ;; esac; "
        + harness("agent")
    )
    (lost,) = [r.instance for r in pools.pool_up(settings, ledger, name, 1).rows]
    run_settings = pools.settings_for_run(settings.replace(pool=name), ledger)
    backend = Ec2PoolBackend(run_settings, ledger=ledger)
    backend.poll_interval = 0.05
    backend.upkeep_interval = 0.0
    calls = record_calls([backend.aws.ec2])
    runner = Runner(ledger, run_settings.replace(max_attempts=1), backend, backoff_base=0.01)
    run, (slow,) = runner.create_run([spec("slow")])
    driver = threading.Thread(target=runner.run, args=(run.id,))
    driver.start()
    try:
        wait_for(lambda: _user_pids(slow.id), "the job runs")
        ec2_machine.agents_offline.add(lost.id)
        release.touch()
    finally:
        release.touch()
        driver.join(timeout=120)
        # The "instance" is this host: what its agent could no longer clean, the test does.
        ec2_machine.run_as_root(
            pool_scripts.clean_job(f"{settings.remote_work_dir}/{slow.id}", pool_scripts.job_user(slow.id))
        )
    assert ledger.get_job(slow.id).state == JobState.SUCCEEDED, ledger.get_job(slow.id).error
    drained = PoolBook(ledger).instance(lost.id)
    assert drained.state == "draining" and slow.id in (drained.note or ""), drained

    run2, (quick,) = runner.create_run([spec("quick")])
    runner.run(run2.id)
    done = ledger.get_job(quick.id)
    assert done.state == JobState.SUCCEEDED, done
    assert len(calls.named("RunInstances")) == 1 and done.resource_id != lost.id  # one replacement
    assert PoolBook(ledger).instance(lost.id).state == GONE
    assert [i["InstanceId"] for i in pool_instances(aws_env, name)] == [done.resource_id]
    (replacement,) = PoolBook(ledger).instances(name)
    assert (replacement.id, replacement.state, replacement.jobs) == (done.resource_id, READY, ())


def test_the_expiry_moves_with_the_jobs_and_the_watcher_ends_an_expired_instance(pool_env, aws_env, tmp_path):
    """The dead-man's switch: idle expiry after `pool up`, pushed to the job's TTL while it runs, back to the
    idle timeout when it ends, the tag always equal to the file the watcher reads; and the watcher powers
    off once that time has passed (run here with a stand-in `shutdown`)."""
    import os
    import time
    from datetime import datetime

    from fceval_tui.backends.aws import tag_map
    from fceval_tui.backends.aws_constants import EXPIRES_AT_TAG
    from tests.helpers.aws import make_context

    make, ledger, name = pool_env
    settings = make(FCEVAL_POOL_IDLE_MINUTES="20", FCEVAL_TTL_MINUTES="300")
    (instance,) = [r.instance for r in pools.pool_up(settings, ledger, name, 1).rows]
    expiry = Path(pool_scripts.expiry_file(settings.remote_work_dir, instance.id))

    def in_force() -> tuple[float, float]:
        tags = tag_map(
            aws_env.client("ec2").describe_instances(InstanceIds=[instance.id])["Reservations"][0]["Instances"][0][
                "Tags"
            ]
        )
        tag = datetime.fromisoformat(tags[EXPIRES_AT_TAG].replace("Z", "+00:00")).timestamp()
        return float(expiry.read_text()), tag

    minutes = lambda epoch: (epoch - time.time()) / 60  # noqa: E731
    file, tag = in_force()
    assert abs(file - tag) < 1 and 19 <= minutes(file) <= 20

    run_settings = pools.settings_for_run(settings.replace(pool=name), ledger)
    backend = Ec2PoolBackend(run_settings, ledger=ledger)
    ctx = make_context(run_settings, f"r{os.urandom(4).hex()}")
    assert backend.provision(ctx) == instance.id
    backend.start(ctx, instance.id)
    file, tag = in_force()
    assert abs(file - tag) < 1 and abs(file - ctx.expires_at.timestamp()) < 1 and minutes(file) > 290
    backend.cancel(ctx, instance.id)
    backend.cleanup(ctx, instance.id)
    file, tag = in_force()
    assert abs(file - tag) < 1 and 19 <= minutes(file) <= 20

    # The watcher itself, with a `shutdown` that only records (and no real one on its PATH).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "shutdown").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/powered-off\nkill $PPID\n')
    (bin_dir / "shutdown").chmod(0o755)
    watcher = tmp_path / "watcher.sh"
    watcher.write_text(pool_scripts.watcher_script(interval=1))
    deadline = tmp_path / "expires"
    deadline.write_text(f"{int(time.time()) + 2}\n")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    proc = subprocess.Popen(["sh", str(watcher), str(deadline)], env=env)
    try:
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert "-h now" in (tmp_path / "powered-off").read_text()
    assert int(deadline.read_text()) <= time.time()


def test_the_end_of_a_job_never_lowers_the_expiry_under_another_that_started_meanwhile(pool_env, aws_env, monkeypatch):
    """The cleanup of the instance's last job (as the ledger saw it) sets the idle expiry; a job that
    claimed a slot and started between that look and the cleanup script must keep its own, later,
    expiry: the instance decides, under a lock its starts take too, from the jobs it runs."""
    import os
    import time

    from tests.helpers.aws import make_context

    make, ledger, name = pool_env
    settings = make(FCEVAL_POOL_IDLE_MINUTES="20", FCEVAL_TTL_MINUTES="300", FCEVAL_POOL_VCPUS_PER_JOB="1")
    (instance,) = [r.instance for r in pools.pool_up(settings, ledger, name, 1).rows]
    assert instance.slots >= 2
    expiry = Path(pool_scripts.expiry_file(settings.remote_work_dir, instance.id))
    backend = Ec2PoolBackend(pools.settings_for_run(settings.replace(pool=name), ledger), ledger=ledger)
    first, second = (make_context(backend.settings, f"r{os.urandom(4).hex()}") for _ in range(2))
    assert backend.provision(first) == instance.id
    backend.start(first, instance.id)
    seen = backend.book.instance(instance.id)  # the first job alone: its cleanup will think it is the last
    assert backend.provision(second) == instance.id
    backend.start(second, instance.id)  # claimed and started after that look, before the cleanup's script
    with monkeypatch.context() as stale:
        stale.setattr(backend.book, "instance", lambda instance_id: seen)
        backend.cancel(first, instance.id)
        backend.cleanup(first, instance.id)
    assert (float(expiry.read_text()) - time.time()) / 60 > 290  # the second job's TTL, not 20 idle minutes
    backend.cancel(second, instance.id)
    backend.cleanup(second, instance.id)
    assert 19 <= (float(expiry.read_text()) - time.time()) / 60 <= 20  # now idle


def test_pool_through_the_cli(pool_env, aws_env, ec2_machine):
    """`pool up`, `pool status`, `launch --pool`, `resources` and `pool down` as a script would use them."""
    import json

    from tests.helpers.aws import PROFILE, REGION, STAGING
    from tests.helpers.cli import run_cli

    make, _ledger, name = pool_env
    state = make().state_dir
    env = {
        "AWS_REGION": REGION,
        "FC_EVAL_S3_BUCKET": STAGING,
        "FCEVAL_ARTIFACTS": f"s3://{RESULTS}/evals",
        "FCEVAL_INSTANCE_PROFILE": PROFILE,
        "FCEVAL_REMOTE_WORK_DIR": ec2_machine.work_root,
        "FCEVAL_RUN_COMMAND": harness("agent"),
        "FCEVAL_GRADE_COMMAND": harness("grade"),
        "EC2_USE_NVME_STORAGE": "false",
        "FCEVAL_POOL_VCPUS_PER_JOB": "256",
    }
    up = run_cli("pool", "up", "--name", name, "--size", "2", "--ttl", "90", "--json", state_dir=state, env=env)
    assert up.code == 0, up.err
    assert json.loads(up.out)["ready"] == 2 and json.loads(up.out)["ttl_minutes"] == 90
    (status,) = json.loads(run_cli("pool", "status", "--name", name, "--json", state_dir=state, env=env).out)
    ids = sorted(i["id"] for i in status["instances"])
    assert status["state"] == "up" and status["slots"] == 2 and len(ids) == 2

    bad = run_cli("launch", "--pool", "nope", "--task-id", "a", "--agent", "aide", state_dir=state, env=env)
    assert bad.code == 2 and "no pool 'nope'" in bad.err and "pool up" in bad.err, bad.err
    launch = run_cli(
        "launch", "--pool", name, "--task-id", "a", "--task-id", "b", "--agent", "aide", "--skip-preflight", "--json",
        state_dir=state, env=env, timeout=300,
    )  # fmt: skip
    assert launch.code == 0, launch.err
    run_id = json.loads(launch.out.splitlines()[0])["run_id"]
    jobs = json.loads(run_cli("status", run_id, "--json", state_dir=state, env=env).out)
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"] and {j["resource_id"] for j in jobs} <= set(ids)

    listed = json.loads(run_cli("resources", "--json", state_dir=state, env=env).out)["resources"]
    rows = {r["id"]: r for r in listed if r.get("pool") == name}
    assert sorted(rows) == ids and all(r["jobs"] == [] and r["idle_seconds"] is not None for r in rows.values())
    assert all(r["orphan"] is None for r in rows.values())

    refused = run_cli("pool", "down", "--name", name, state_dir=state, env=env)
    assert refused.code == 2 and "--yes" in refused.err  # no terminal to confirm on
    down = run_cli("pool", "down", "--name", name, "--yes", "--json", state_dir=state, env=env)
    assert down.code == 0, down.err
    assert sorted(json.loads(down.out)["ended"]) == ids and json.loads(down.out)["left"] == []
    assert pool_instances(aws_env, name, ("pending", "running", "shutting-down", "stopping", "stopped")) == []
