"""Warm pools in the ledger: each pool, its EC2 instances, and which job holds which slot.

The ledger, not tags, is where a pool lives: a slot is claimed in one transaction that counts the
instance's claims, so two runners (threads of one console, or a console and a background runner on
this machine) never put more jobs on an instance than it has slots, and a console restarted after a
crash finds every pool, instance and claim as it was. The instances also carry the pool's tag, so that
`exec --pool`, teardown and other consoles can see them in AWS.

A claim is held from the job's start until the cleanup of its session, processes, files and user on
the instance has been verified; an instance whose cleanup fails keeps the claim and is drained (no new
claims) until it is replaced.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fceval_tui.domain.models import iso, parse_iso, utcnow
from fceval_tui.errors import NotFoundError
from fceval_tui.ledger import Ledger

# A pool is up (kept at its size), down (`pool down`, teardown), or idle: its idle timeout or its
# instances' expiry ended the last of them, and nothing brings it back but `pool up`.
POOL_UP, POOL_DOWN, POOL_IDLE = "up", "down", "idle"
# An instance boots, is prepared (ready: takes jobs), may be drained (takes none; replaced), and is gone.
BOOTING, READY, DRAINING, GONE = "booting", "ready", "draining", "gone"
LIVE_STATES = (BOOTING, READY, DRAINING)
IDLE_NOTE = "no job for"  # the note of an instance the idle timeout ended
_INSTANCE_FIELDS = ("state", "slots", "idle_since", "expires_at", "note")


@dataclass(frozen=True)
class Pool:
    name: str
    created_at: datetime
    state: str
    size: int
    ttl_minutes: float
    idle_minutes: float
    settings: dict  # what its instances were launched with (Settings.to_json)

    @property
    def up(self) -> bool:
        return self.state == POOL_UP

    def why_not_up(self) -> str:
        if self.state == POOL_IDLE:
            return (
                f"pool {self.name} ended itself: no job ran on its instances for {self.idle_minutes:g} min "
                "(FCEVAL_POOL_IDLE_MINUTES) or their expiry passed"
            )
        return f"pool {self.name} is down"


@dataclass(frozen=True)
class PoolInstance:
    id: str
    pool: str
    seq: int
    state: str
    slots: int
    launched_at: datetime
    idle_since: datetime | None
    expires_at: datetime | None
    note: str | None
    jobs: tuple[str, ...] = ()  # the jobs holding a slot

    @property
    def live(self) -> bool:
        return self.state != GONE

    @property
    def free(self) -> int:
        return max(0, self.slots - len(self.jobs)) if self.state == READY else 0


def _encode(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def _pool(row: sqlite3.Row) -> Pool:
    return Pool(
        name=row["name"],
        created_at=parse_iso(row["created_at"]),
        state=row["state"],
        size=row["size"],
        ttl_minutes=row["ttl_minutes"],
        idle_minutes=row["idle_minutes"],
        settings=json.loads(row["settings"]),
    )


def _instance(row: sqlite3.Row, jobs: tuple[str, ...]) -> PoolInstance:
    return PoolInstance(
        id=row["id"],
        pool=row["pool"],
        seq=row["seq"],
        state=row["state"],
        slots=row["slots"],
        launched_at=parse_iso(row["launched_at"]),
        idle_since=parse_iso(row["idle_since"]),
        expires_at=parse_iso(row["expires_at"]),
        note=row["note"],
        jobs=jobs,
    )


class PoolBook:
    """The pools' tables of one ledger (thread-safe like the ledger: every call is one transaction)."""

    def __init__(self, ledger: Ledger, clock: Callable[[], datetime] = utcnow) -> None:
        self.ledger = ledger
        self._clock = clock

    # -- pools ------------------------------------------------------------------------------------

    def open_pool(self, name: str, size: int, ttl_minutes: float, idle_minutes: float, settings: dict) -> Pool:
        """Create the pool, or bring an existing one up with these values (a pool that is up keeps its
        creation time, so its instances' launch tokens stay the same)."""
        with self.ledger.transaction() as db:
            row = db.execute("SELECT * FROM pools WHERE name=?", (name,)).fetchone()
            values = (size, ttl_minutes, idle_minutes, json.dumps(settings, default=str))
            if row is None:
                db.execute(
                    "INSERT INTO pools(name, created_at, state, size, ttl_minutes, idle_minutes, settings)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (name, iso(self._clock()), POOL_UP, *values),
                )
            else:
                created = row["created_at"] if row["state"] == POOL_UP else iso(self._clock())
                db.execute(
                    "UPDATE pools SET state=?, size=?, ttl_minutes=?, idle_minutes=?, settings=?, created_at=?"
                    " WHERE name=?",
                    (POOL_UP, *values, created, name),
                )
            return _pool(db.execute("SELECT * FROM pools WHERE name=?", (name,)).fetchone())

    def pool(self, name: str) -> Pool:
        with self.ledger.transaction() as db:
            row = db.execute("SELECT * FROM pools WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"no pool {name!r} in the ledger", f"start one with `fceval-tui pool up --name {name} --size N`"
            )
        return _pool(row)

    def pools(self) -> list[Pool]:
        with self.ledger.transaction() as db:
            return [_pool(r) for r in db.execute("SELECT * FROM pools ORDER BY created_at, name")]

    def set_pool_state(self, name: str, state: str) -> None:
        with self.ledger.transaction() as db:
            db.execute("UPDATE pools SET state=? WHERE name=?", (state, name))

    # -- instances --------------------------------------------------------------------------------

    def next_seq(self, pool: str) -> int:
        """The number the pool's next instance is launched under (its launch token and job-id tag)."""
        with self.ledger.transaction() as db:
            row = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM pool_instances WHERE pool=?", (pool,))
            return row.fetchone()["seq"]

    def add_instance(self, pool: str, instance_id: str, seq: int, expires_at: datetime) -> PoolInstance:
        with self.ledger.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO pool_instances(id, pool, seq, state, launched_at, expires_at)"
                " VALUES (?,?,?,?,?,?)",
                (instance_id, pool, seq, BOOTING, iso(self._clock()), iso(expires_at)),
            )
        return self.instance(instance_id)

    def update_instance(self, instance_id: str, **fields: Any) -> PoolInstance:
        unknown = set(fields) - set(_INSTANCE_FIELDS)
        if unknown:
            raise TypeError(f"unknown pool instance fields {sorted(unknown)}")
        with self.ledger.transaction() as db:
            sets = ", ".join(f"{name}=?" for name in fields)
            db.execute(
                f"UPDATE pool_instances SET {sets} WHERE id=?", (*(_encode(v) for v in fields.values()), instance_id)
            )
        return self.instance(instance_id)

    def instance(self, instance_id: str) -> PoolInstance:
        with self.ledger.transaction() as db:
            row = db.execute("SELECT * FROM pool_instances WHERE id=?", (instance_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no pool instance {instance_id!r} in the ledger", "see `fceval-tui pool status`")
            return _instance(row, self._jobs(db, instance_id))

    def instances(self, pool: str | None = None, live: bool = True) -> list[PoolInstance]:
        sql, args = "SELECT * FROM pool_instances", []
        where = []
        if pool is not None:
            where.append("pool=?")
            args.append(pool)
        if live:
            where.append(f"state IN ({','.join('?' * len(LIVE_STATES))})")
            args.extend(LIVE_STATES)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.ledger.transaction() as db:
            rows = db.execute(sql + " ORDER BY pool, seq", args).fetchall()
            return [_instance(r, self._jobs(db, r["id"])) for r in rows]

    @staticmethod
    def _jobs(db: sqlite3.Connection, instance_id: str) -> tuple[str, ...]:
        rows = db.execute("SELECT job_id FROM pool_claims WHERE instance_id=? ORDER BY since", (instance_id,))
        return tuple(r["job_id"] for r in rows)

    # -- slots --------------------------------------------------------------------------------------

    def claim(self, pool: str, job_id: str, attempt: int) -> PoolInstance | None:
        """A slot for this attempt of the job on a ready instance of the pool (the one it already holds,
        after a resume), or None when every slot is taken. Jobs are spread: the least busy instance first."""
        now = iso(self._clock())
        with self.ledger.transaction() as db:
            held = db.execute(
                "SELECT c.instance_id FROM pool_claims c JOIN pool_instances i ON i.id = c.instance_id"
                " WHERE c.job_id=? AND c.attempt=? AND i.pool=?",
                (job_id, attempt, pool),
            ).fetchone()
            if held is not None:
                chosen = held["instance_id"]
            else:
                row = db.execute(
                    "SELECT i.id, (SELECT COUNT(*) FROM pool_claims c WHERE c.instance_id = i.id) AS used"
                    " FROM pool_instances i WHERE i.pool=? AND i.state=? AND used < i.slots"
                    " ORDER BY used, i.idle_since, i.seq LIMIT 1",
                    (pool, READY),
                ).fetchone()
                if row is None:
                    return None
                chosen = row["id"]
                db.execute(
                    "INSERT INTO pool_claims(instance_id, job_id, attempt, since) VALUES (?,?,?,?)",
                    (chosen, job_id, attempt, now),
                )
                db.execute("UPDATE pool_instances SET idle_since=NULL WHERE id=?", (chosen,))
            return _instance(
                db.execute("SELECT * FROM pool_instances WHERE id=?", (chosen,)).fetchone(), self._jobs(db, chosen)
            )

    def release(self, instance_id: str, job_id: str) -> PoolInstance:
        """The job's slot is free again (its cleanup was verified); an instance left without jobs is idle."""
        with self.ledger.transaction() as db:
            db.execute("DELETE FROM pool_claims WHERE instance_id=? AND job_id=?", (instance_id, job_id))
            if not self._jobs(db, instance_id):
                db.execute(
                    "UPDATE pool_instances SET idle_since=COALESCE(idle_since, ?) WHERE id=?",
                    (iso(self._clock()), instance_id),
                )
        return self.instance(instance_id)

    def retire_idle(self, instance_id: str, idle_before: datetime, note: str) -> bool:
        """Take an instance out of the pool for its idle timeout, in the transaction that checks it is still
        ready, without a claim, and idle since `idle_before` or earlier (so no claim can slip in): it is
        draining with `note`, and the pool one smaller (`shrink`). False when it is not idle after all."""
        with self.ledger.transaction() as db:
            row = db.execute(
                "SELECT i.pool, i.idle_since FROM pool_instances i WHERE i.id=? AND i.state=?"
                " AND NOT EXISTS (SELECT 1 FROM pool_claims c WHERE c.instance_id = i.id)",
                (instance_id, READY),
            ).fetchone()
            idle_since = parse_iso(row["idle_since"]) if row else None
            if idle_since is None or idle_since > idle_before:
                return False
            db.execute("UPDATE pool_instances SET state=?, note=? WHERE id=?", (DRAINING, note, instance_id))
            self._shrink(db, row["pool"])
        return True

    def shrink(self, pool: str) -> None:
        """One instance fewer to keep: it ended by its own switch (idle timeout or expiry), and is not
        replaced. A pool left with none is idle."""
        with self.ledger.transaction() as db:
            self._shrink(db, pool)

    @staticmethod
    def _shrink(db: sqlite3.Connection, pool: str) -> None:
        db.execute("UPDATE pools SET size=MAX(0, size - 1) WHERE name=? AND state=?", (pool, POOL_UP))
        db.execute("UPDATE pools SET state=? WHERE name=? AND state=? AND size=0", (POOL_IDLE, pool, POOL_UP))

    def set_expiry(self, instance_ids: list[str], expires_at: datetime) -> None:
        with self.ledger.transaction() as db:
            db.executemany(
                "UPDATE pool_instances SET expires_at=? WHERE id=?", [(iso(expires_at), i) for i in instance_ids]
            )

    def drop_claims(self, instance_id: str) -> None:
        """Forget every claim on an instance that is gone (its jobs' compute went with it)."""
        with self.ledger.transaction() as db:
            db.execute("DELETE FROM pool_claims WHERE instance_id=?", (instance_id,))

    def record(self, kind: str, pool: str, **detail: Any) -> None:
        """An event in the ledger's log about a pool (not tied to a run)."""
        self.ledger.record("", None, kind, pool=pool, **detail)
