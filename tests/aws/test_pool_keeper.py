"""The pool keeper (services/pool_keeper.py) on the moto server and the SSM doubles, with a clock the test
moves: the dead-man's switch pushed forward in batches while instances have jobs, and no longer once the
keeper is gone; the idle timeout; unhealthy instances drained and replaced with no job asking."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from fceval_tui.backends.aws import tag_map
from fceval_tui.backends.aws_constants import EXPIRES_AT_TAG, MANAGED_BY, MANAGED_BY_TAG, POOL_TAG
from fceval_tui.domain.models import iso, utcnow
from fceval_tui.errors import PermanentError
from fceval_tui.ledger_pools import DRAINING, GONE, POOL_IDLE, READY, PoolBook
from fceval_tui.services import pool as pools
from fceval_tui.services.pool_keeper import PoolKeeper
from tests.helpers.aws import make_context, new_run_id, record_calls, spec
from tests.helpers.pools import PYTHON, pool_instances, wait_for

pytestmark = pytest.mark.skipif(PYTHON is None, reason="no Python that an unprivileged job user can run")


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _fleet(world, ledger, settings, name: str, n: int, expires: datetime, ttl: float = 60) -> list[str]:
    """`n` running instances of pool `name`, ready, each with a job on it, as `pool up` and claims leave
    them (booting 60 through `pool up` would prepare them one Run Command at a time)."""
    ec2 = world.client("ec2")
    ami = ec2.describe_images(Filters=[{"Name": "name", "Values": ["al2023-ami-2023*"]}])["Images"][0]["ImageId"]
    tags = [{"Key": MANAGED_BY_TAG, "Value": MANAGED_BY}, {"Key": POOL_TAG, "Value": name}]
    reservation = ec2.run_instances(
        ImageId=ami, MinCount=n, MaxCount=n, TagSpecifications=[{"ResourceType": "instance", "Tags": tags}]
    )
    ids = [i["InstanceId"] for i in reservation["Instances"]]
    book = PoolBook(ledger)
    book.open_pool(name, n, ttl, 30, settings.to_json())
    state = Path(settings.remote_work_dir) / ".pool"
    state.mkdir(mode=0o700, exist_ok=True)
    for seq, instance_id in enumerate(ids, start=1):
        book.add_instance(name, instance_id, seq, expires)
        book.update_instance(instance_id, state=READY, slots=1)
        assert book.claim(name, f"{name}-job-{seq}", 1).id == instance_id
        (state / f"{instance_id}.expires").write_text(f"{int(expires.timestamp())}\n")
    return ids


def _tags(world, ids: list[str]) -> dict[str, str]:
    pages = world.client("ec2").get_paginator("describe_instances").paginate(InstanceIds=ids)
    return {
        i["InstanceId"]: tag_map(i.get("Tags", [])).get(EXPIRES_AT_TAG)
        for page in pages
        for r in page["Reservations"]
        for i in r["Instances"]
    }


def _files(settings, ids: list[str]) -> set[int]:
    state = Path(settings.remote_work_dir) / ".pool"
    return {int((state / f"{i}.expires").read_text()) for i in ids}


def test_the_expiry_of_60_busy_instances_moves_in_one_batch_per_push(pool_env, aws_env):
    make, ledger, name = pool_env
    settings = make()
    clock = Clock()
    ids = _fleet(aws_env, ledger, settings, name, 60, clock.now + timedelta(minutes=5), ttl=60)
    keeper = PoolKeeper(settings, ledger, [name], clock=clock, push_every=300)
    backend = keeper.backend(PoolBook(ledger).pool(name))
    calls = record_calls([backend.aws.ec2, backend.aws.ssm])

    report = keeper.tick()
    until = clock.now + timedelta(minutes=60)
    assert sorted(report.pushed[name]) == sorted(ids) and report.problems == {}
    assert [len(c["InstanceIds"]) for c in calls.named("SendCommand")] == [50, 10]
    (tagged,) = calls.named("CreateTags")
    assert sorted(tagged["Resources"]) == sorted(ids)
    assert set(_tags(aws_env, ids).values()) == {iso(until)}
    assert _files(settings, ids) == {int(until.timestamp())}
    assert {iso(i.expires_at) for i in PoolBook(ledger).instances(name)} == {iso(until)}

    clock.advance(minutes=4)  # not due yet: each push buys a TTL, the next comes push_every later
    assert keeper.tick().pushed[name] == [] and len(calls.named("SendCommand")) == 2
    clock.advance(minutes=2)
    assert len(keeper.tick().pushed[name]) == 60
    assert len(calls.named("SendCommand")) == 4 and len(calls.named("CreateTags")) == 2
    assert _files(settings, ids) == {int((clock.now + timedelta(minutes=60)).timestamp())}
    assert calls.named("RunInstances") == [] and calls.named("TerminateInstances") == []


def test_a_push_that_fails_moves_no_tag_and_is_tried_again(pool_env, aws_env):
    make, ledger, name = pool_env
    settings = make()
    clock = Clock()
    before = clock.now + timedelta(minutes=5)
    ids = _fleet(aws_env, ledger, settings, name, 2, before)
    problems: list[str] = []
    keeper = PoolKeeper(settings, ledger, [name], clock=clock, on_problem=problems.append)
    blocker = Path(settings.remote_work_dir) / ".pool" / f"{ids[1]}.expires.tmp"
    blocker.mkdir()  # the script cannot write that instance's file
    report = keeper.tick()
    assert report.pushed[name] == []
    assert len(problems) == 1 and "not moved" in problems[0] and "Failed" in problems[0], problems
    assert set(_tags(aws_env, ids).values()) == {None}  # the tag never says later than the file
    assert {iso(i.expires_at) for i in PoolBook(ledger).instances(name)} == {iso(before)}

    blocker.rmdir()
    assert sorted(keeper.tick().pushed[name]) == sorted(ids)
    assert set(_tags(aws_env, ids).values()) == {iso(clock.now + timedelta(minutes=60))}


def test_the_expiry_stops_moving_when_the_keeper_is_gone(pool_env, aws_env):
    make, ledger, name = pool_env
    settings = make()
    clock = Clock()
    ids = _fleet(aws_env, ledger, settings, name, 1, clock.now + timedelta(minutes=5))

    def ticking() -> datetime:
        clock.advance(minutes=10)  # every pass finds the instance due
        return clock.now

    keeper = PoolKeeper(settings, ledger, [name], clock=ticking, interval=0.05)
    calls = record_calls([keeper.backend(PoolBook(ledger).pool(name)).aws.ssm])
    with keeper:
        wait_for(lambda: len(calls.named("SendCommand")) >= 2, "two pushes while the keeper runs")
    assert not keeper.running
    sent, expiry = len(calls.named("SendCommand")), _files(settings, ids)
    time.sleep(0.5)  # ten intervals: nothing pushes once the keeper is gone
    assert len(calls.named("SendCommand")) == sent and _files(settings, ids) == expiry


def test_the_idle_timeout_terminates_instances_nobody_uses_and_the_pool_says_so(pool_env, aws_env):
    make, ledger, name = pool_env
    settings = make(FCEVAL_POOL_IDLE_MINUTES="30")
    status = pools.pool_up(settings, ledger, name, 2)
    busy, idle = sorted(r.instance.id for r in status.rows)
    book = PoolBook(ledger)
    assert book.claim(name, "job-busy", 1).id in (busy, idle)
    busy = next(i.id for i in book.instances(name) if i.jobs)
    idle = next(i.id for i in book.instances(name) if not i.jobs)
    clock = Clock()
    keeper = PoolKeeper(settings, ledger, [name], clock=clock)
    calls = record_calls([keeper.backend(book.pool(name)).aws.ec2])

    clock.advance(minutes=29)
    assert keeper.tick().idle_ended[name] == []
    clock.advance(minutes=2)
    assert keeper.tick().idle_ended[name] == [idle]
    assert [c["InstanceIds"] for c in calls.named("TerminateInstances")] == [[idle]]
    ended = book.instance(idle)
    assert ended.state == GONE and ended.note.startswith("no job for 30 min") and "terminated" in ended.note
    assert book.pool(name).size == 1 and book.pool(name).up  # one fewer to keep: not replaced
    (status,) = pools.pool_status(settings, ledger, name)
    assert status.to_json()["idle_ended"] == [idle]
    assert "1 instance(s) terminated after 30 min without a job" in status.note
    assert [r.instance.id for r in status.rows] == [busy]

    book.release(busy, "job-busy")
    clock.advance(minutes=31)
    assert keeper.tick().idle_ended[name] == [busy]
    assert calls.named("RunInstances") == []
    pool = book.pool(name)
    assert pool.state == POOL_IDLE and not pool.up
    (status,) = pools.pool_status(settings, ledger, name)
    assert "ended itself" in status.note and status.rows == [] and sorted(status.idle_ended) == sorted([busy, idle])
    assert pool_instances(aws_env, name) == []
    run_settings = settings.replace(backend="ec2", pool=name)
    with pytest.raises(PermanentError, match="ended itself"):
        pools.pool_backend(run_settings, ledger, pool).provision(make_context(run_settings, new_run_id()))
    assert keeper.tick().pushed == {}  # an idle pool is no longer kept


def test_an_unhealthy_instance_is_drained_and_replaced_without_a_claim(pool_env, aws_env, ec2_machine):
    """Its agent offline while a job holds a slot: drained at once and a replacement launched, with no job
    asking for a slot; terminated once its job is over."""
    from fceval_tui.domain.states import JobState
    from fceval_tui.services.runner import Runner

    make, ledger, name = pool_env
    settings = make()
    (lost,) = [r.instance.id for r in pools.pool_up(settings, ledger, name, 1).rows]
    run_settings = pools.settings_for_run(settings.replace(pool=name), ledger)
    _, (job,) = Runner(ledger, run_settings).create_run([spec("t")])
    book = PoolBook(ledger)
    assert book.claim(name, job.id, 1).id == lost
    keeper = PoolKeeper(settings, ledger, [name])
    calls = record_calls([keeper.backend(book.pool(name)).aws.ec2])
    ec2_machine.agents_offline.add(lost)

    report = keeper.tick()
    assert report.drained[name] == [lost] and len(report.launched[name]) == 1
    (new,) = report.launched[name]
    (status,) = pools.pool_status(settings, ledger, name, refresh=False)
    rows = {r.instance.id: r.instance for r in status.rows}
    assert rows[lost].state == DRAINING and "SSM agent is offline" in rows[lost].note
    assert f"replaced by {new}" in rows[lost].note and rows[new].note.startswith(f"replacing {lost}")
    assert (status.draining, status.replacing) == (1, 1) and "1 draining, 1 replacing" in status.note

    ledger.transition(job.id, JobState.CANCELLED)
    for _ in range(50):  # passes until the replacement is prepared (each is one upkeep)
        keeper.tick()
        if book.instance(new).state == READY:
            break
    assert book.instance(new).state == READY and book.instance(lost).state == GONE
    assert len(calls.named("RunInstances")) == 1
    assert [i["InstanceId"] for i in pool_instances(aws_env, name)] == [new]
