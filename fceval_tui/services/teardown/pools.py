"""Teardown and warm pools: a pool's instances belong to no run (their run-id tag is `pool-NAME`).

- `--run RUN` leaves them: the run's jobs on them are cancelled, and cancelling cleans their slots.
- `--orphans` keeps a pool that is up in this ledger (its instances end themselves at their expiry, or
  with `pool down`) and removes what nobody looks after: instances of a pool that is down or idle, unknown to
  the pool or drained with no job left, instances past their expiry, and, past their expiry only,
  those of a pool this ledger does not know (another console's).
- `--all` ends them, and the pools they belonged to are marked down so nothing launches them again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from fceval_tui.backends.base import Resource
from fceval_tui.errors import NotFoundError
from fceval_tui.ledger import Ledger
from fceval_tui.ledger_pools import DRAINING, GONE, POOL_DOWN, PoolBook

SKIP = "skip"  # not shown in the plan at all


def pool_of(resource: Resource) -> str | None:
    return resource.detail.get("pool") if resource.kind == "instance" else None


def decide(resource: Resource, scope_kind: str, ledger: Ledger) -> tuple[str, str]:
    """(destroy | keep | skip, why) for an instance of a warm pool."""
    name = pool_of(resource)
    if scope_kind == "all":
        return "destroy", f"--all (warm pool {name})"
    if scope_kind == "run":
        return SKIP, ""
    now = datetime.now(UTC)
    expired = resource.expires_at is not None and resource.expires_at <= now
    until = resource.expires_at.strftime("%H:%M UTC") if resource.expires_at else "its TTL"
    book = PoolBook(ledger)
    try:
        pool = book.pool(name)
        instance = book.instance(resource.id)
    except NotFoundError:
        if expired:
            return "destroy", f"warm pool {name} is not in this ledger and its expiry passed"
        return "keep", f"warm pool {name} is not in this ledger and lives until {until} (another console?)"
    if not pool.up:
        return "destroy", f"warm pool {name} is {pool.state}"
    if instance.state == GONE:
        return "destroy", f"no longer one of warm pool {name}'s instances"
    if instance.state == DRAINING and not _active(ledger, instance.jobs):
        return "destroy", f"drained from warm pool {name} ({instance.note}) and no job is left on it"
    if expired:
        return "destroy", f"past its expiry ({until}): its dead-man's switch did not end it"
    jobs = f"{len(instance.jobs)} job(s) on it" if instance.jobs else "idle"
    return "keep", f"warm pool {name}: {jobs}; ends itself at {until} unless used, or with `fceval-tui pool down`"


def _active(ledger: Ledger, job_ids: Iterable[str]) -> bool:
    for job_id in job_ids:
        try:
            if not ledger.get_job(job_id).state.is_final:
                return True
        except NotFoundError:
            continue
    return False


def forget_destroyed(ledger: Ledger, resources: Iterable[Resource], scope_kind: str) -> None:
    """The ledger's side of destroyed pool instances: gone, and with `--all` their pools down."""
    book = PoolBook(ledger)
    for resource in resources:
        name = pool_of(resource)
        if not name:
            continue
        try:
            book.instance(resource.id)
        except NotFoundError:
            continue
        book.drop_claims(resource.id)
        book.update_instance(resource.id, state=GONE, note="removed by teardown")
        if scope_kind == "all":
            book.set_pool_state(name, POOL_DOWN)
