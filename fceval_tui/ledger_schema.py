"""The ledger's SQLite schema, as the ordered list of migrations that build it.

`PRAGMA user_version` is the number of migrations applied; a ledger opens by applying the rest.
Never edit a released migration: append a new one.
"""

from __future__ import annotations

# Append-only: each entry moves the schema from version i to i+1. Never edit a shipped entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        backend TEXT NOT NULL,
        concurrency INTEGER NOT NULL,
        settings TEXT NOT NULL DEFAULT '{}',
        skip_preflight INTEGER NOT NULL DEFAULT 0,
        owner_pid INTEGER,
        owner_host TEXT
    );
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        agent TEXT NOT NULL,
        task_id TEXT NOT NULL,
        model TEXT NOT NULL DEFAULT '',
        dataset TEXT NOT NULL DEFAULT '',
        backend TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        resource_id TEXT,
        started_at TEXT,
        ended_at TEXT,
        artifacts TEXT NOT NULL DEFAULT '[]',
        cost_usd REAL NOT NULL DEFAULT 0,
        error TEXT,
        updated_at TEXT,
        change_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_run ON jobs(run_id, seq);
    CREATE INDEX jobs_change ON jobs(change_seq);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts TEXT NOT NULL,
        run_id TEXT NOT NULL,
        job_id TEXT,
        kind TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_job ON events(job_id, id);
    CREATE INDEX events_run ON events(run_id, id);
    CREATE TRIGGER events_append_only_u BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TRIGGER events_append_only_d BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    """,
    # The runner's process start time (clock ticks since boot): a reused pid is not the runner.
    """
    ALTER TABLE runs ADD COLUMN owner_started INTEGER;
    """,
    # Why a job did not succeed, as a domain.triage.ErrorClass value (filter and retry by it).
    """
    ALTER TABLE jobs ADD COLUMN error_class TEXT;
    """,
    # What each attempt cost, kept apart: a job's cost is their sum, so a retry never overwrites it.
    """
    CREATE TABLE attempt_costs (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        attempt INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        PRIMARY KEY (job_id, attempt)
    );
    INSERT INTO attempt_costs SELECT id, MAX(attempts, 1), cost_usd FROM jobs WHERE cost_usd > 0;
    """,
    # Warm pools (ledger_pools.py): each pool, its instances, and which job holds which slot.
    """
    CREATE TABLE pools (
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL,
        size INTEGER NOT NULL,
        ttl_minutes REAL NOT NULL,
        idle_minutes REAL NOT NULL,
        settings TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE pool_instances (
        id TEXT PRIMARY KEY,
        pool TEXT NOT NULL REFERENCES pools(name),
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        slots INTEGER NOT NULL DEFAULT 0,
        launched_at TEXT NOT NULL,
        idle_since TEXT,
        expires_at TEXT,
        note TEXT
    );
    CREATE INDEX pool_instances_pool ON pool_instances(pool, state);
    CREATE TABLE pool_claims (
        instance_id TEXT NOT NULL REFERENCES pool_instances(id),
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        since TEXT NOT NULL,
        PRIMARY KEY (instance_id, job_id)
    );
    CREATE INDEX pool_claims_job ON pool_claims(job_id);
    """,
    # When each attempt ran (for cost over time) and the hourly price it was billed at, with where that
    # price came from (a domain.prices.PriceSource value). Earlier ledgers know the times of a job's
    # last attempt only.
    """
    ALTER TABLE attempt_costs ADD COLUMN started_at TEXT;
    ALTER TABLE attempt_costs ADD COLUMN billed_until TEXT;
    ALTER TABLE attempt_costs ADD COLUMN hourly_usd REAL;
    ALTER TABLE attempt_costs ADD COLUMN price_source TEXT;
    UPDATE attempt_costs SET
        started_at = (SELECT started_at FROM jobs WHERE jobs.id = job_id AND MAX(jobs.attempts, 1) = attempt),
        billed_until = (
            SELECT COALESCE(ended_at, updated_at) FROM jobs WHERE jobs.id = job_id AND MAX(jobs.attempts, 1) = attempt
        );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
