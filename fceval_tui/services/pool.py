"""Warm pools (EC2): bring one up, report it, take it down, and the settings a run on a pool uses.

A pool lives in the ledger (ledger_pools: pools, instances, slot claims) and its instances carry the
pool's tag; both survive a console restart. Its instances end themselves: each has a dead-man's
switch (backends/pool_scripts) that the console moves forward as jobs start and sets to the idle
timeout when an instance's last job ends. Everything here blocks: call from a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fceval_tui.backends.ec2_pool import Ec2PoolBackend
from fceval_tui.config import Settings
from fceval_tui.config.settings import POOL_NAME
from fceval_tui.errors import BackendError, UserError
from fceval_tui.ledger import Ledger
from fceval_tui.ledger_pools import POOL_DOWN, READY, Pool, PoolBook
from fceval_tui.services.pool_view import PoolStatus, idle_ended, rows

BOOT_TIMEOUT = 900.0  # boot plus SSM agent registration of a new instance; slow AMIs take minutes
# What a run on a pool takes from the pool: where its instances are and how they were set up.
POOL_PINNED = (
    "region",
    "profile",
    "ec2_instance_type",
    "spot_price",
    "remote_work_dir",
    "pool_vcpus_per_job",
    "pool_idle_minutes",
    "instance_profile",
)


def check_name(name: str) -> str:
    if not re.fullmatch(POOL_NAME, name):
        raise UserError(
            f"{name!r} is not a pool name", "use lowercase letters, digits and '-', at most 32 characters, e.g. default"
        )
    return name


UP_FIELDS = ("name", "size", "instance_type", "ttl")


def check_up(
    settings: Settings, name: str, size: str | int, instance_type: str | None = None, ttl_minutes: str | None = None
) -> tuple[int, Settings]:
    """The checks of `pool up` on its values as typed (the console's form passes text): the size and the
    settings the pool's instances get. UserError for the first bad value; `up_errors` gives all of them."""
    errors = up_errors(settings, name, size, instance_type, ttl_minutes)
    if errors:
        raise next(iter(errors.values()))
    raw = {"ec2_instance_type": instance_type} if instance_type else {}
    if ttl_minutes:
        raw["ttl_minutes"] = ttl_minutes
    return int(size), settings.with_raw(raw).replace(backend="ec2", pool=name)


def up_errors(
    settings: Settings, name: str, size: str | int, instance_type: str | None, ttl_minutes: str | None
) -> dict[str, UserError]:
    """Each bad value of `pool up`, by field (UP_FIELDS), with its message and fix."""
    errors: dict[str, UserError] = {}
    try:
        check_name(name)
    except UserError as exc:
        errors["name"] = exc
    text = str(size).strip()
    if not text.lstrip("-").isdigit() or int(text) < 1:
        errors["size"] = UserError(
            f"size {text or '(empty)'!r}: a pool needs a whole number of instances, at least one", "give 1 or more"
        )
    for field, attr, value in (
        ("instance_type", "ec2_instance_type", instance_type),
        ("ttl", "ttl_minutes", ttl_minutes),
    ):
        if value:
            try:
                settings.with_raw({attr: value})
            except UserError as exc:
                errors[field] = exc
    return errors


def pool_settings(settings: Settings, pool: Pool) -> Settings:
    """The settings the pool's instances were launched with (its region, profile, type...)."""
    return settings.with_json(pool.settings).replace(backend="ec2", pool=pool.name)


def settings_for_run(settings: Settings, ledger: Ledger | None) -> Settings:
    """The settings of a run on the pool `settings.pool` (unchanged without one): EC2, in the pool's region
    with its instances' setup (POOL_PINNED), and as many jobs at once as the pool has slots unless a
    concurrency was given. Without a ledger (a dry run, which reads none) only the backend changes."""
    if not settings.pool:
        return settings
    check_name(settings.pool)
    if settings.backend in ("ecs", "batch"):
        raise UserError(
            f"pools are EC2 instances: a {settings.backend} run cannot use pool {settings.pool}",
            "drop --backend or use --backend ec2 (ECS and Batch keep warm capacity themselves: see the README)",
        )
    settings = settings.replace(backend="ec2")
    if ledger is None:
        return settings
    book = PoolBook(ledger)
    pool = book.pool(settings.pool)
    if not pool.up:
        raise UserError(pool.why_not_up(), f"start it with `fceval-tui pool up --name {pool.name} --size N`")
    settings = settings.with_json({k: v for k, v in pool.settings.items() if k in POOL_PINNED})
    if settings.sources.get("concurrent", "default") == "default":
        slots = sum(i.slots for i in book.instances(pool.name) if i.state == READY)
        settings = settings.replace(concurrent=max(1, slots))
    return settings


def pool_backend(settings: Settings, ledger: Ledger, pool: Pool) -> Ec2PoolBackend:
    return Ec2PoolBackend(pool_settings(settings, pool), ledger=ledger)


def pool_up(
    settings: Settings,
    ledger: Ledger,
    name: str,
    size: int | str,
    instance_type: str | None = None,
    ttl_minutes: str | None = None,
    on_progress: Callable[[str], None] | None = None,
    timeout: float = BOOT_TIMEOUT,
) -> PoolStatus:
    """Bring the pool to `size` ready instances (launching only what is missing) and wait for them.
    `instance_type` and `ttl_minutes` are as typed (checked like EC2_INSTANCE_TYPE and FCEVAL_TTL_MINUTES)."""
    size, settings = check_up(settings, name, size, instance_type, ttl_minutes)
    backend = Ec2PoolBackend(settings, ledger=ledger)
    backend.aws.check_credentials()
    book = PoolBook(ledger)
    pool = book.open_pool(name, size, settings.ttl_minutes, settings.pool_idle_minutes, settings.to_json())
    book.record("pool_up", name, size=size, instance_type=settings.ec2_instance_type)
    say = on_progress or (lambda message: None)
    say(f"pool {name}: bringing up {size} x {settings.ec2_instance_type} in {settings.region}")
    try:
        instances = backend.fleet.wait_ready(pool, timeout)
    except BackendError as exc:
        raise UserError(str(exc), getattr(exc, "fix", "") or "see `fceval-tui pool status`") from exc
    return PoolStatus(pool, rows(settings, pool, instances))


def pool_status(settings: Settings, ledger: Ledger, name: str | None = None, refresh: bool = True) -> list[PoolStatus]:
    """Every pool (or the named one) with its live instances; `refresh` first checks them with EC2 and SSM."""
    book = PoolBook(ledger)
    pools = [book.pool(check_name(name))] if name else book.pools()
    statuses = []
    for pool in pools:
        instances = book.instances(pool.name)
        if refresh and instances:
            try:
                instances = pool_backend(settings, ledger, pool).fleet.refresh(pool)
            except BackendError as exc:
                raise UserError(f"pool {pool.name}: {exc}", getattr(exc, "fix", "") or "check AWS access") from exc
        statuses.append(PoolStatus(book.pool(pool.name), rows(settings, pool, instances), idle_ended(book, pool)))
    return statuses


def pool_down(
    settings: Settings, ledger: Ledger, name: str, on_progress: Callable[[str], None] | None = None
) -> list[str]:
    """Cancel the pool's active jobs, terminate its instances and wait until EC2 says terminated;
    the ids of the instances it ended."""
    from fceval_tui.services.job_actions import cancel_jobs

    book = PoolBook(ledger)
    pool = book.pool(check_name(name))
    say = on_progress or (lambda message: None)
    book.set_pool_state(name, POOL_DOWN)  # first: no new claims from here on
    book.record("pool_down", name)
    pool = book.pool(name)
    instances = book.instances(name)
    jobs = [job for i in instances for job in i.jobs]
    if jobs:
        say(f"cancelling {len(jobs)} job(s) on the pool")
        cancel_jobs(ledger, settings, jobs, reason=f"pool {name} down")
    backend = pool_backend(settings, ledger, pool)
    ids = sorted({i.id for i in book.instances(name)} | set(backend.fleet.tagged(name)))
    if ids:
        say(f"terminating {', '.join(ids)} and waiting until EC2 says terminated")
        try:
            backend.fleet.terminate(pool, ids, "pool down", wait=True)
        except BackendError as exc:
            raise UserError(f"pool {name}: {exc}", "run `fceval-tui pool down` again, or `teardown --all`") from exc
    return ids
