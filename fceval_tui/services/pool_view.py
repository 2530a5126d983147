"""Warm pools as the console and the CLI show them: one row per instance with its jobs, idle time and
cost so far, read from the ledger alone (no AWS call, no boto3: the resources view and the Pools view
refresh from it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fceval_tui.config import Settings
from fceval_tui.domain.models import iso, utcnow
from fceval_tui.domain.prices import cost_so_far, ec2_hourly
from fceval_tui.ledger import Ledger
from fceval_tui.ledger_pools import BOOTING, DRAINING, GONE, IDLE_NOTE, POOL_DOWN, READY, Pool, PoolBook, PoolInstance


@dataclass(frozen=True)
class InstanceRow:
    """One pool instance as the console shows it."""

    pool: str
    instance: PoolInstance
    idle_seconds: float | None  # None while it has jobs, or before it is ready
    cost_usd: float

    def to_json(self) -> dict:
        i = self.instance
        return {
            "pool": self.pool,
            "id": i.id,
            "state": i.state,
            "slots": i.slots,
            "jobs": list(i.jobs),
            "idle_seconds": None if self.idle_seconds is None else round(self.idle_seconds),
            "launched_at": iso(i.launched_at),
            "expires_at": iso(i.expires_at),
            "cost_usd": round(self.cost_usd, 4),
            "note": i.note,
        }


@dataclass(frozen=True)
class PoolStatus:
    pool: Pool
    rows: list[InstanceRow]
    idle_ended: tuple[str, ...] = ()  # instances the idle timeout ended since the pool came up

    @property
    def draining(self) -> int:
        return sum(1 for r in self.rows if r.instance.state == DRAINING)

    @property
    def replacing(self) -> int:
        return sum(
            1 for r in self.rows if r.instance.state == BOOTING and (r.instance.note or "").startswith("replacing")
        )

    @property
    def note(self) -> str:
        """What the pool's own row says beyond its counts: why it is not up, what its idle timeout ended,
        what is being drained and replaced."""
        parts = [] if self.pool.up or self.pool.state == POOL_DOWN else [self.pool.why_not_up()]
        if self.idle_ended:
            parts.append(
                f"{len(self.idle_ended)} instance(s) terminated after {self.pool.idle_minutes:g} min without a job"
            )
        if self.draining or self.replacing:
            parts.append(f"{self.draining} draining, {self.replacing} replacing")
        return "; ".join(parts)

    @property
    def ready(self) -> int:
        return sum(1 for r in self.rows if r.instance.state == READY)

    @property
    def slots(self) -> int:
        return sum(r.instance.slots for r in self.rows if r.instance.state == READY)

    @property
    def busy(self) -> int:
        return sum(len(r.instance.jobs) for r in self.rows)

    def to_json(self) -> dict:
        p = self.pool
        return {
            "name": p.name,
            "state": p.state,
            "size": p.size,
            "instance_type": p.settings.get("ec2_instance_type"),
            "region": p.settings.get("region"),
            "ttl_minutes": p.ttl_minutes,
            "idle_minutes": p.idle_minutes,
            "ready": self.ready,
            "slots": self.slots,
            "busy_slots": self.busy,
            "draining": self.draining,
            "replacing": self.replacing,
            "idle_ended": list(self.idle_ended),
            "note": self.note,
            "cost_usd": round(sum(r.cost_usd for r in self.rows), 4),
            "instances": [r.to_json() for r in self.rows],
        }


def rows(
    settings: Settings, pool: Pool, instances: list[PoolInstance], now: datetime | None = None
) -> list[InstanceRow]:
    """One row per instance: its jobs, how long it has been idle, what it cost so far."""
    now = now or utcnow()
    spot = pool.settings.get("spot_price")
    rate = ec2_hourly(pool.settings.get("ec2_instance_type") or settings.ec2_instance_type, spot)
    return [
        InstanceRow(
            pool.name,
            i,
            (now - i.idle_since).total_seconds() if i.idle_since and not i.jobs and i.state == READY else None,
            cost_so_far(rate, i.launched_at, now),
        )
        for i in instances
    ]


def idle_ended(book: PoolBook, pool: Pool) -> tuple[str, ...]:
    return tuple(
        i.id
        for i in book.instances(pool.name, live=False)
        if i.state == GONE and (i.note or "").startswith(IDLE_NOTE) and i.launched_at >= pool.created_at
    )


def pool_statuses(settings: Settings, ledger: Ledger) -> list[PoolStatus]:
    """Every pool in the ledger with its live instances, as the ledger last saw them."""
    book = PoolBook(ledger)
    now = utcnow()
    return [PoolStatus(p, rows(settings, p, book.instances(p.name), now), idle_ended(book, p)) for p in book.pools()]


def rows_by_instance(settings: Settings, ledger: Ledger) -> dict[str, InstanceRow]:
    """The live pool instances' rows by instance id (the resources listing marks them with it)."""
    return {row.instance.id: row for status in pool_statuses(settings, ledger) for row in status.rows}
