"""The contract every backend fulfils; the runner drives it, one thread per active job.

Per attempt the runner calls: provision -> start -> observe (repeatedly) -> collect, and
`cleanup` whatever happened. Methods block (they run in the runner's threads, never the UI's).
Errors are `TransientError` (retried with backoff, `CapacityError` shows as `waiting_capacity`)
or `PermanentError` (the job fails at once); anything else is a bug and fails the job with the
traceback in the log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from fceval_tui import locations
from fceval_tui.backends.aws_constants import EXPIRES_AT_TAG, JOB_ID_TAG, MANAGED_BY, MANAGED_BY_TAG, RUN_ID_TAG
from fceval_tui.config import Settings
from fceval_tui.domain.models import Job, iso, parse_iso
from fceval_tui.domain.prices import HourlyPrice
from fceval_tui.domain.states import JobState
from fceval_tui.errors import TransientError


def work_dir(settings: Settings, job: Job) -> Path:
    """A job's private directory on this machine: pipeline script, status files, console.log, downloads."""
    return locations.job_work_dir(settings.state_dir, job.run_id, job.id)


@dataclass(frozen=True)
class JobContext:
    """Everything a backend needs to run one attempt of one job."""

    job: Job
    attempt: int
    run_command: str
    grade_command: str | None
    artifact_prefix: str
    work_dir: Path  # a private local directory for this job (scripts, logs, downloads)
    expires_at: datetime  # the hard TTL, as put in the fceval:expires-at tag
    env: Mapping[str, str] = field(default_factory=dict)  # the job's values, the pipeline's environment

    @property
    def tags(self) -> dict[str, str]:
        return {
            MANAGED_BY_TAG: MANAGED_BY,
            RUN_ID_TAG: self.job.run_id,
            JOB_ID_TAG: self.job.id,
            EXPIRES_AT_TAG: iso(self.expires_at),
        }


@dataclass(frozen=True)
class Observation:
    """What the backend saw. `phase` is running, grading or uploading while the pipeline is busy;
    `done` once the pipeline has finished (successfully or not) and `collect` may run."""

    phase: JobState
    done: bool = False
    exit_code: int | None = None
    detail: str = ""
    cost_usd: float | None = None


@dataclass(frozen=True)
class Outcome:
    """Result of `collect`: whether the job succeeded, and where its artifacts are."""

    succeeded: bool
    exit_code: int | None
    artifacts: tuple[str, ...] = ()
    error: str | None = None
    error_class: str | None = None  # a domain.triage.ErrorClass value when the backend knows it


@dataclass(frozen=True)
class Resource:
    """A live piece of compute (or a leftover) as listed for the console and teardown."""

    backend: str
    kind: str
    id: str
    state: str
    run_id: str | None = None
    job_id: str | None = None
    started_at: datetime | None = None
    expires_at: datetime | None = None
    cost_usd: float = 0.0
    detail: dict = field(default_factory=dict)

    @classmethod
    def from_tags(
        cls,
        tags: Mapping[str, str],
        *,
        backend: str,
        kind: str,
        id: str,
        state: str,
        started_at: datetime | None = None,
        cost_usd: float = 0.0,
        detail: dict | None = None,
    ) -> Resource:
        """A resource the console tagged: its run, job and expiry are read back from the tags."""
        return cls(
            backend=backend,
            kind=kind,
            id=id,
            state=state,
            run_id=tags.get(RUN_ID_TAG),
            job_id=tags.get(JOB_ID_TAG),
            started_at=started_at,
            expires_at=parse_iso(tags.get(EXPIRES_AT_TAG)),
            cost_usd=cost_usd,
            detail=detail or {},
        )


def is_managed(tags: Mapping[str, str]) -> bool:
    """Whether the tags mark a resource the console created."""
    return tags.get(MANAGED_BY_TAG) == MANAGED_BY


@dataclass(frozen=True)
class TmuxTarget:
    """Where a job's tmux session lives: tmux argv prefix (socket selection) and session name.
    `transport` is None for this machine, else a transport object from fceval_tui.transports."""

    tmux_args: tuple[str, ...]
    session: str
    transport: object | None = None


class ResourceGone(TransientError):
    """The job's compute no longer exists (terminated, reaped, machine rebooted): worth a new attempt."""


class Backend(ABC):
    name: ClassVar[str]
    # IAM actions the console's caller identity needs for this backend; audit and policy printer read them.
    caller_actions: ClassVar[tuple[str, ...]] = ()
    # IAM actions the compute's own role needs (instance profile / task role).
    instance_actions: ClassVar[tuple[str, ...]] = ()
    # The AWS service the compute's role is passed to (iam:PassedToService) and, where the audit
    # checks it, trusted by; None when the backend passes no role.
    compute_principal: ClassVar[str | None] = None
    # First state of an attempt: `starting` for local work, `provisioning` for cloud compute.
    first_state: ClassVar[JobState] = JobState.PROVISIONING
    # Seconds between the runner's status reads of one job.
    poll_interval: float = 2.0
    # The longest wait between two tries of a job waiting for capacity. Backing off to a minute spares
    # AWS; where asking is a ledger read (a warm pool's slots, freed by any process) a freed slot should
    # not stay idle that long.
    capacity_wait_cap: ClassVar[float | None] = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check_ready(self) -> None:  # noqa: B027 - optional hook: most backends need no check
        """Raise a UserError when the backend cannot work at all (missing tool, no credentials)."""

    @abstractmethod
    def provision(self, ctx: JobContext) -> str:
        """Create (or find, for an idempotent retry) the compute; return its resource id."""

    @abstractmethod
    def start(self, ctx: JobContext, resource_id: str) -> None:
        """Start the pipeline (run step, then grade step) on the compute."""

    @abstractmethod
    def observe(self, ctx: JobContext, resource_id: str) -> Observation:
        """Look once at the pipeline. Raise ResourceGone when the compute vanished."""

    @abstractmethod
    def collect(self, ctx: JobContext, resource_id: str, observation: Observation) -> Outcome:
        """After `done`: store and verify artifacts per the artifact layout, decide success."""

    @abstractmethod
    def cancel(self, ctx: JobContext, resource_id: str) -> None:
        """Stop the pipeline now (cancel or timeout). Idempotent."""

    @abstractmethod
    def cleanup(self, ctx: JobContext, resource_id: str) -> None:
        """Destroy everything this attempt created. Idempotent; also called after errors."""

    def renew_credentials(self) -> str:
        """After a CredentialsExpired: use credentials that work again and say whose they are; raise
        (CredentialsExpired or another BackendError) while they still do not. No credentials here."""
        return ""

    def renewal_hint(self, run_id: str) -> str:
        """What the operator runs to renew expired credentials."""
        return ""

    def artifacts_dir(self, job: Job, local_work: Path) -> str:
        """Where the pipeline writes artifacts, as seen by the compute ({artifacts_dir} in templates)."""
        return str(local_work / "artifacts")

    def artifact_prefix(self) -> str:
        """Where this backend stores artifacts (a directory or s3://...); a ConfigError when it cannot."""
        return self.settings.artifact_prefix

    def hourly_cost(self) -> float:
        """Approximate USD per hour of one job's compute (cost so far, dry-run estimates)."""
        return 0.0

    def attempt_price(self, ctx: JobContext, resource_id: str) -> HourlyPrice | None:
        """The hourly price of this attempt's running compute when the backend knows it better than
        `hourly_cost()` (the spot price it launched at). Never raises; None: bill at `hourly_cost()`."""
        return None

    def would_create(self) -> dict[str, object]:
        """What one job's compute would be, from the settings alone (a dry run makes no AWS call)."""
        return {}

    def list_resources(self) -> list[Resource]:
        """Live resources carrying ManagedBy=fceval-tui, in O(1) API calls per refresh."""
        return []

    def destroy_resource(self, resource: Resource) -> None:
        """Remove one listed resource (teardown)."""
        raise NotImplementedError(f"{self.name} backend cannot destroy {resource.kind} resources")

    def log_lines(self, job: Job, limit: int = 500) -> list[str]:
        """The last lines of the job's output once its live session is gone (empty when unknown)."""
        return []

    def tmux_target(self, job: Job) -> TmuxTarget | None:
        """Where the job's tmux session can be mirrored, or None (e.g. Batch has no tmux)."""
        return None
