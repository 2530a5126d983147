"""Runs and jobs as immutable values; the ledger is their only writer."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from fceval_tui.domain.states import JobState

BACKENDS = ("local", "ec2", "ecs", "batch")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if ts else None


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_run_id(now: datetime | None = None) -> str:
    """`r` + the time in base 36 + 2 random bytes: short to type, sorts by creation, never collides
    in practice (the ledger still checks)."""
    seconds = int((now or utcnow()).timestamp())
    stamp = ""
    while seconds:
        seconds, digit = divmod(seconds, 36)
        stamp = _B36[digit] + stamp
    return "r" + stamp + secrets.token_hex(2)


def job_id_for(run_id: str, seq: int) -> str:
    # No '.' or ':' so the id is a valid tmux session name as is.
    return f"{run_id}-{seq:03d}"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One line of a job file (or one --task-id): what to evaluate."""

    agent: str
    task_id: str
    model: str = ""
    dataset: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.agent, self.task_id, self.model)


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    created_at: datetime
    backend: str
    concurrency: int
    settings: dict = field(default_factory=dict)
    skip_preflight: bool = False


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    run_id: str
    seq: int
    agent: str
    task_id: str
    model: str
    dataset: str
    backend: str
    state: JobState
    attempts: int = 0
    exit_code: int | None = None
    resource_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    artifacts: tuple[str, ...] = ()
    cost_usd: float = 0.0
    error: str | None = None
    updated_at: datetime | None = None
    error_class: str | None = None  # a domain.triage.ErrorClass value once the job ended without success
    paused: str | None = None  # why the runner holds the job without touching its compute, while it does

    @property
    def spec(self) -> JobSpec:
        return JobSpec(self.agent, self.task_id, self.model, self.dataset)

    def to_json(self) -> dict:
        data = asdict(self)
        data["state"] = str(self.state)
        data["artifacts"] = list(self.artifacts)
        for key in ("started_at", "ended_at", "updated_at"):
            data[key] = iso(data[key])
        return data


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    ts: datetime
    run_id: str
    job_id: str | None
    kind: str
    from_state: str | None
    to_state: str | None
    detail: dict

    def to_json(self) -> dict:
        data = asdict(self)
        data["ts"] = iso(self.ts)
        return data
