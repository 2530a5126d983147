"""The ledger: SQLite in WAL mode under the state dir.

Every state change is one transaction that writes the event row and the job's new current state
together, conditioned on the state the caller saw; an illegal or stale transition raises instead
of being written. A change is considered done only once that transaction has committed, so a
`kill -9` at any moment loses nothing that was reported as done. (synchronous=NORMAL in WAL mode
is durable against a process crash; only an OS crash or power loss can drop the last commits.)
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fceval_tui import locations
from fceval_tui.domain.models import Event, Job, JobSpec, Run, iso, job_id_for, new_run_id, parse_iso, utcnow
from fceval_tui.domain.states import IllegalTransition, JobState
from fceval_tui.errors import NotFoundError, StateDirError
from fceval_tui.ledger_costs import AttemptCosts
from fceval_tui.ledger_schema import MIGRATIONS, SCHEMA_VERSION

_JOB_FIELDS = (
    "attempts",
    "exit_code",
    "resource_id",
    "started_at",
    "ended_at",
    "artifacts",
    "cost_usd",
    "error",
    "error_class",
    "paused",
)


def _encode(name: str, value: Any) -> Any:
    if name in ("started_at", "ended_at") and isinstance(value, datetime):
        return iso(value)
    if name == "artifacts":
        return json.dumps(list(value))
    return value


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        run_id=row["run_id"],
        seq=row["seq"],
        agent=row["agent"],
        task_id=row["task_id"],
        model=row["model"],
        dataset=row["dataset"],
        backend=row["backend"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        exit_code=row["exit_code"],
        resource_id=row["resource_id"],
        started_at=parse_iso(row["started_at"]),
        ended_at=parse_iso(row["ended_at"]),
        artifacts=tuple(json.loads(row["artifacts"])) if row["artifacts"] != "[]" else (),
        cost_usd=row["cost_usd"],
        error=row["error"],
        error_class=row["error_class"],
        updated_at=parse_iso(row["updated_at"]),
        paused=row["paused"],
    )


def _run(row: sqlite3.Row) -> Run:
    return Run(
        id=row["id"],
        created_at=parse_iso(row["created_at"]),
        backend=row["backend"],
        concurrency=row["concurrency"],
        settings=json.loads(row["settings"]),
        skip_preflight=bool(row["skip_preflight"]),
    )


@dataclass(frozen=True)
class RunSummary:
    run: Run
    counts: dict[str, int]
    cost_usd: float = 0.0  # every attempt of every job so far
    paused: str | None = None  # why its active jobs are paused, while they are

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return sum(n for state, n in self.counts.items() if JobState(state).is_final)


class Ledger(AttemptCosts):
    """Thread-safe handle on the ledger; one connection guarded by a lock (SQLite serialises anyway)."""

    def __init__(self, path: Path, clock=utcnow) -> None:
        self.path = path
        self._clock = clock  # injectable so tests and snapshots get fixed timestamps
        self._lock = threading.RLock()
        try:
            # SQLite gives the -wal and -shm files the database file's permissions.
            locations.private_file(path)
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.OperationalError, OSError) as exc:
            raise StateDirError(
                f"cannot open the ledger {path} ({exc})",
                "pass --state-dir DIR or set FCEVAL_STATE_DIR to a writable directory",
            ) from None

    @classmethod
    def open(cls, state_dir: Path, clock=utcnow) -> Ledger:
        return cls(locations.ledger_path(state_dir), clock=clock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the ledger's connection, for the tables other modules own (ledger_pools)."""
        with self._tx() as db:
            yield db

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateDirError(
                    f"the ledger {self.path} was written by a newer fceval-tui (schema {version})",
                    "upgrade fceval-tui or use another --state-dir",
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[step]):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._db.execute("PRAGMA user_version").fetchone()[0]

    # -- writes ---------------------------------------------------------------------------------

    def _event(self, db, run_id, job_id, kind, from_state=None, to_state=None, detail=None) -> int:
        cur = db.execute(
            "INSERT INTO events(ts, run_id, job_id, kind, from_state, to_state, detail) VALUES (?,?,?,?,?,?,?)",
            (iso(self._clock()), run_id, job_id, kind, from_state, to_state, json.dumps(detail or {}, default=str)),
        )
        return cur.lastrowid

    def _next_change(self, db) -> int:
        return db.execute("SELECT COALESCE(MAX(change_seq), 0) + 1 FROM jobs").fetchone()[0]

    def create_run(
        self,
        backend: str,
        concurrency: int,
        specs: Iterable[JobSpec],
        settings: dict | None = None,
        skip_preflight: bool = False,
        run_id: str | None = None,
    ) -> tuple[Run, list[Job]]:
        specs = list(specs)
        now = self._clock()
        with self._tx() as db:
            run_id = run_id or new_run_id()
            while db.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone():
                run_id = new_run_id()
            db.execute(
                "INSERT INTO runs(id, created_at, backend, concurrency, settings, skip_preflight) VALUES (?,?,?,?,?,?)",
                (run_id, iso(now), backend, concurrency, json.dumps(settings or {}, default=str), int(skip_preflight)),
            )
            self._event(
                db,
                run_id,
                None,
                "run_created",
                detail={"jobs": len(specs), "backend": backend, "concurrency": concurrency},
            )
            if skip_preflight:
                self._event(db, run_id, None, "preflight_skipped", detail={"by": "--skip-preflight"})
            change = self._next_change(db)
            rows = [
                (
                    job_id_for(run_id, i),
                    run_id,
                    i,
                    s.agent,
                    s.task_id,
                    s.model,
                    s.dataset,
                    backend,
                    JobState.PENDING.value,
                    iso(now),
                    change,
                )
                for i, s in enumerate(specs, start=1)
            ]
            db.executemany(
                "INSERT INTO jobs(id, run_id, seq, agent, task_id, model, dataset, backend, state, updated_at,"
                " change_seq) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            db.executemany(
                "INSERT INTO events(ts, run_id, job_id, kind, to_state, detail) VALUES (?,?,?,?,?,?)",
                [(iso(now), run_id, r[0], "job_created", JobState.PENDING.value, "{}") for r in rows],
            )
        return self.get_run(run_id), self.jobs(run_id=run_id)

    def transition(
        self,
        job_id: str,
        target: JobState,
        expect: JobState | None = None,
        reason: str = "",
        **fields: Any,
    ) -> Job:
        """Move a job to `target` if the table allows it from its current state (and from `expect`)."""
        unknown = set(fields) - set(_JOB_FIELDS)
        if unknown:
            raise TypeError(f"unknown job fields {sorted(unknown)}")
        with self._tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no job {job_id!r} in the ledger", "list jobs with `fceval-tui status`")
            current = JobState(row["state"])
            if (expect is not None and current != expect) or not current.can_go(target):
                raise IllegalTransition(job_id, current, target)
            sets = {name: _encode(name, value) for name, value in fields.items()}
            sets.update(state=target.value, updated_at=iso(self._clock()), change_seq=self._next_change(db))
            db.execute(
                f"UPDATE jobs SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?",
                (*sets.values(), job_id),
            )
            detail = {k: v for k, v in sets.items() if k in _JOB_FIELDS}
            if reason:
                detail["reason"] = reason
            self._event(db, row["run_id"], job_id, "state", current.value, target.value, detail)
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def update(self, job_id: str, **fields: Any) -> Job:
        """Change non-state fields (cost so far, resource id) without an event."""
        unknown = set(fields) - set(_JOB_FIELDS)
        if unknown:
            raise TypeError(f"unknown job fields {sorted(unknown)}")
        with self._tx() as db:
            sets = {name: _encode(name, value) for name, value in fields.items()}
            sets.update(updated_at=iso(self._clock()), change_seq=self._next_change(db))
            db.execute(f"UPDATE jobs SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?", (*sets.values(), job_id))
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no job {job_id!r} in the ledger", "list jobs with `fceval-tui status`")
            return _job(row)

    def record(self, run_id: str, job_id: str | None, kind: str, **detail: Any) -> int:
        with self._tx() as db:
            return self._event(db, run_id, job_id, kind, detail=detail)

    def claim_run(self, run_id: str) -> None:
        """Mark this process as the run's runner, refusing if another live process holds it."""
        with self._tx() as db:
            row = db.execute("SELECT owner_pid, owner_host, owner_started FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no run {run_id!r} in the ledger", "list runs with `fceval-tui status`")
            pid = row["owner_pid"]
            if pid and pid != os.getpid() and _owner_alive(row):
                from fceval_tui.errors import UserError

                raise UserError(
                    f"run {run_id} is already being driven by process {pid}",
                    f"watch it with `fceval-tui status {run_id}`, or stop that process first",
                )
            db.execute(
                "UPDATE runs SET owner_pid=?, owner_host=?, owner_started=? WHERE id=?",
                (os.getpid(), socket.gethostname(), process_start_time(os.getpid()), run_id),
            )

    def release_run(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET owner_pid=NULL, owner_started=NULL WHERE id=? AND owner_pid=?", (run_id, os.getpid())
            )

    def run_owner(self, run_id: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT owner_pid, owner_host, owner_started FROM runs WHERE id=?", (run_id,)
            ).fetchone()
        if row and row["owner_pid"] and _owner_alive(row):
            return row["owner_pid"]
        return None

    # -- reads ----------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no run {run_id!r} in the ledger", "list runs with `fceval-tui status`")
        return _run(row)

    def runs(self) -> list[Run]:
        with self._lock:
            return [_run(r) for r in self._db.execute("SELECT * FROM runs ORDER BY created_at, rowid")]

    def run_summaries(self) -> list[RunSummary]:
        with self._lock:
            counts: dict[str, dict[str, int]] = {}
            costs: dict[str, float] = {}
            paused: dict[str, str] = {}
            query = (
                "SELECT run_id, state, COUNT(*) AS n, SUM(cost_usd) AS cost, MAX(paused) AS paused"
                " FROM jobs GROUP BY run_id, state"
            )
            for row in self._db.execute(query):
                counts.setdefault(row["run_id"], {})[row["state"]] = row["n"]
                costs[row["run_id"]] = costs.get(row["run_id"], 0.0) + (row["cost"] or 0.0)
                if row["paused"]:
                    paused[row["run_id"]] = row["paused"]
        return [
            RunSummary(run, counts.get(run.id, {}), round(costs.get(run.id, 0.0), 6), paused.get(run.id))
            for run in self.runs()
        ]

    def get_job(self, job_id: str) -> Job:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no job {job_id!r} in the ledger", "list jobs with `fceval-tui status`")
        return _job(row)

    def jobs(self, run_id: str | None = None, states: Iterable[JobState] | None = None) -> list[Job]:
        sql, args = "SELECT * FROM jobs", []
        where = []
        if run_id is not None:
            where.append("run_id=?")
            args.append(run_id)
        if states is not None:
            states = [s.value for s in states]
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY run_id, seq"
        with self._lock:
            return [_job(r) for r in self._db.execute(sql, args)]

    def jobs_changed_since(self, change_seq: int) -> tuple[list[Job], int]:
        """Jobs changed after `change_seq`, and the cursor to pass next time (incremental refresh)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE change_seq > ? ORDER BY change_seq", (change_seq,)
            ).fetchall()
        # The cursor comes from the rows read, not a second query: a commit landing in between
        # would otherwise move the cursor past a change nobody received.
        cursor = rows[-1]["change_seq"] if rows else change_seq
        return [_job(r) for r in rows], cursor

    def events(
        self,
        run_id: str | None = None,
        job_id: str | None = None,
        after: int = 0,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Event]:
        sql, args = "SELECT * FROM events WHERE id > ?", [after]
        if run_id is not None:
            sql += " AND run_id=?"
            args.append(run_id)
        if job_id is not None:
            sql += " AND job_id=?"
            args.append(job_id)
        sql += " ORDER BY id" + (" DESC" if newest_first else "")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [
            Event(
                r["id"],
                parse_iso(r["ts"]),
                r["run_id"],
                r["job_id"],
                r["kind"],
                r["from_state"],
                r["to_state"],
                json.loads(r["detail"]),
            )
            for r in rows
        ]


def _statements(script: str) -> Iterator[str]:
    # executescript() would commit the open transaction; run a migration statement by statement instead.
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise ValueError("incomplete statement in a migration")


def process_start_time(pid: int) -> int | None:
    """When a live process started (clock ticks since boot, field 22 of /proc/PID/stat), or None when
    it is gone, a zombie, or the system has no /proc (then only the pid is compared)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] == b"Z" or not fields[19].isdigit():
        return None
    return int(fields[19])


def _owner_alive(row: sqlite3.Row) -> bool:
    """Whether the process recorded as a run's runner is still that runner."""
    pid, started = row["owner_pid"], row["owner_started"]
    if row["owner_host"] != socket.gethostname() or not pid_exists(pid):
        return False
    if not os.path.isdir("/proc"):
        return True  # no start times to compare here
    # A zombie (killed, not yet reaped) drives nothing; a different start time means a reused pid.
    now = process_start_time(pid)
    return now is not None and (started is None or now == started)


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie or another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
