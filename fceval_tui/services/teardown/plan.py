"""Planning a teardown: list what exists (backends by tag, S3 staging, the ledger), decide what is in
scope and why, and change nothing."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fceval_tui.backends.base import Resource
from fceval_tui.config import Settings
from fceval_tui.domain.models import Job, iso
from fceval_tui.errors import BackendError, UserError
from fceval_tui.ledger import Ledger
from fceval_tui.services import staging_objects
from fceval_tui.services.teardown import pools

log = logging.getLogger(__name__)

DESTROY, CANCEL, KEEP = "destroy", "mark-cancelled", "keep"
LEDGER_KIND = "ledger-entry"
# Per-VPC groups shared by every run's instances: removable only once no compute of theirs is left.
SHARED_KINDS = frozenset({"security-group"})
# States of a resource on its way out (terminate accepted); not counted as left behind.
GOING_STATES = frozenset({"shutting-down", "terminated", "stopping", "deprovisioning", "stopped", "deleting"})
CLOUD_BACKENDS = ("batch", "ec2", "ecs")
RUN_ID_SHAPE = re.compile(r"r[0-9a-z]{4,32}")
SETTLE_SECONDS = 120.0  # how long transient destroy errors (a group still in use) are retried
RETRY_PAUSE = 5.0


@dataclass(frozen=True)
class Scope:
    kind: str  # "run", "orphans" or "all"
    run_id: str | None = None

    @classmethod
    def run(cls, run_id: str) -> Scope:
        return cls("run", run_id)

    @classmethod
    def orphans(cls) -> Scope:
        return cls("orphans")

    @classmethod
    def all(cls) -> Scope:
        return cls("all")

    def __str__(self) -> str:
        return f"run {self.run_id}" if self.kind == "run" else self.kind


@dataclass(frozen=True)
class PlanItem:
    resource: Resource
    action: str  # destroy, mark-cancelled (a ledger entry), keep (shown, not touched)
    reason: str
    job_state: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.resource.backend, self.resource.kind, self.resource.id)

    def age_seconds(self, now: datetime) -> float | None:
        started = self.resource.started_at
        return max(0.0, (now - started).total_seconds()) if started else None

    def to_json(self, now: datetime) -> dict:
        r = self.resource
        return {
            "backend": r.backend,
            "kind": r.kind,
            "id": r.id,
            "state": r.state,
            "run_id": r.run_id,
            "job_id": r.job_id,
            "job_state": self.job_state,
            "action": self.action,
            "reason": self.reason,
            "started_at": iso(r.started_at),
            "age_seconds": self.age_seconds(now),
            "cost_usd": round(r.cost_usd, 4),
        }


@dataclass(frozen=True)
class Target:
    """One place to list: a backend with the settings that locate its resources (a run's own region,
    profile, cluster, queue or bucket), so that a run is torn down where it was launched."""

    backend: str
    settings: Settings = field(compare=False, repr=False)
    place: tuple[str, ...] = ()  # what locates the backend's resources; equal places are listed once

    @classmethod
    def of(cls, backend: str, settings: Settings) -> Target:
        return cls(backend, settings, place_of(backend, settings))

    def label(self, configured: Settings) -> str:
        """The backend's name, with its place when that is not where the current settings point."""
        if self.place == place_of(self.backend, configured):
            return self.backend
        return f"{self.backend} ({' '.join(p for p in self.place if p)})"


def place_of(backend: str, settings: Settings) -> tuple[str, ...]:
    """What locates a backend's resources; an empty part means its settings are incomplete."""
    if backend == "local":
        return ()
    if backend == staging_objects.BACKEND:
        return (settings.profile, settings.staging_bucket or "")
    where = {"ecs": settings.ecs_cluster, "batch": settings.batch_queue}.get(backend)
    return (settings.region, settings.profile) + (() if where is None else (where,))


@dataclass
class Listing:
    targets: list[Target] = field(default_factory=list)  # asked for
    resources: list[Resource] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)  # target labels
    unlisted: dict[str, str] = field(default_factory=dict)  # target label -> why it could not be listed
    notes: list[str] = field(default_factory=list)
    origin: dict[tuple[str, str, str], Target] = field(default_factory=dict)  # resource key -> where it was found
    listed_places: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)


@dataclass
class Plan:
    scope: Scope
    items: list[PlanItem]
    kept: list[PlanItem]
    cancel_job_ids: list[str]
    listing: Listing
    created_at: datetime

    @property
    def actionable(self) -> bool:
        return bool(self.items or self.cancel_job_ids)

    @property
    def cost_usd(self) -> float:
        return sum(i.resource.cost_usd for i in self.items)

    def subset(self, keys: Iterable[tuple[str, str, str]]) -> Plan:
        """The plan cut down to the chosen items (the console's selection), with their jobs to cancel."""
        keys = set(keys)
        chosen = [i for i in self.items if i.key in keys]
        if len(chosen) == len(self.items):
            return self
        jobs = {i.resource.job_id for i in chosen if i.resource.job_id}
        cancel = [j for j in self.cancel_job_ids if j in jobs]
        return Plan(self.scope, chosen, self.kept, cancel, self.listing, self.created_at)

    def to_json(self) -> dict:
        now = self.created_at
        return {
            "scope": str(self.scope),
            "listed": self.listing.listed,
            "unlisted": self.listing.unlisted,
            "notes": self.listing.notes,
            "plan": [i.to_json(now) for i in self.items],
            "kept": [i.to_json(now) for i in self.kept],
            "cancel_jobs": self.cancel_job_ids,
            "cost_usd": round(self.cost_usd, 4),
        }


def check_run_id(run_id: str) -> str:
    """A run id's shape (`r` + base-36 time + hex), checked before it is looked for in tags."""
    if not RUN_ID_SHAPE.fullmatch(run_id):
        raise UserError(f"{run_id!r} is not a run id", "run ids look like r<letters and digits>, e.g. rsxk2a9f3c1")
    return run_id


def backends_to_list(settings: Settings, ledger: Ledger, scope: Scope) -> list[Target]:
    """Where to look: this machine's tmux always; a known run's backend and staging bucket with the
    run's own settings; otherwise (orphans, everything, a run the ledger does not know) every place
    the current settings or any run in the ledger point to, and there every cloud backend once the
    console is set up for the cloud (a staging bucket) and AWS credentials are found."""
    from fceval_tui.services.runner import run_settings

    targets = [Target.of("local", settings)]
    known = {run.id: run for run in ledger.runs()}
    if scope.kind == "run" and scope.run_id in known:
        run = known[scope.run_id]
        places = [(run_settings(settings, run), {run.backend}, False)]
    else:
        places = [(settings, {settings.backend}, True)]
        places += [(run_settings(settings, run), {run.backend}, True) for run in known.values()]
    for where, named, scan in places:
        backends = named - {"local"}
        if scan and where.staging_bucket and _has_credentials(where):
            backends |= set(CLOUD_BACKENDS)
        targets.extend(Target.of(backend, where) for backend in sorted(backends))
        if backends:
            targets.append(Target.of(staging_objects.BACKEND, where))
    unique: dict[tuple[str, tuple[str, ...]], Target] = {}
    for target in targets:
        unique.setdefault((target.backend, target.place), target)
    return list(unique.values())


def _has_credentials(settings: Settings) -> bool:
    from fceval_tui.backends.aws import new_session

    try:
        return new_session(settings.region, settings.profile).get_credentials() is not None
    except UserError:  # an unknown profile
        return False


def list_everything(settings: Settings, targets: Iterable[Target]) -> Listing:
    """List every target once, each with its own settings; `settings` are the current ones (for labels)."""
    from fceval_tui.backends import make_backend

    targets = list(targets)
    listing = Listing(targets)
    for target in targets:
        name = target.label(settings)
        if target.backend == "local" and shutil.which("tmux") is None:
            listing.notes.append("tmux is not installed, so this machine runs no job sessions")
            listing.listed.append(name)
            listing.listed_places.add((target.backend, target.place))
            continue
        missing = _missing(target)
        if missing:
            listing.notes.append(f"{name}: {missing}" if name != target.backend else missing)
            continue
        try:
            if target.backend == staging_objects.BACKEND:
                found = staging_objects.list_staging(target.settings)
            else:
                found = make_backend(target.backend, target.settings).list_resources()
        except (UserError, BackendError) as exc:
            listing.unlisted[name] = str(exc)
            continue
        listing.listed.append(name)
        listing.listed_places.add((target.backend, target.place))
        for resource in found:
            key = (resource.backend, resource.kind, resource.id)
            if key not in listing.origin:  # e.g. task definitions are per region, listed with each cluster
                listing.origin[key] = target
                listing.resources.append(resource)
    return listing


def _missing(target: Target) -> str | None:
    """Why a backend cannot be looked at with these settings (skipped with a note), or None."""
    s = target.settings
    if target.backend == "ecs" and not s.ecs_cluster:
        return "FCEVAL_ECS_CLUSTER is empty, so no ECS cluster was looked at"
    if target.backend == "batch" and not s.batch_queue:
        return "FCEVAL_BATCH_QUEUE is empty, so no Batch queue was looked at"
    if target.backend == staging_objects.BACKEND and not s.staging_bucket:
        return "FC_EVAL_S3_BUCKET is empty, so there are no staging objects to look for"
    return None


# -- planning ----------------------------------------------------------------------------------


class _LedgerView:
    """What the ledger knows, read once per plan."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.runs = {run.id: run for run in ledger.runs()}
        self.jobs = {job.id: job for job in ledger.jobs()}
        self._owners: dict[str, int | None] = {}

    def owner(self, run_id: str) -> int | None:
        if run_id not in self._owners:
            self._owners[run_id] = self.ledger.run_owner(run_id)
        return self._owners[run_id]

    def active_jobs(self, run_id: str | None = None) -> list[Job]:
        return [j for j in self.jobs.values() if not j.state.is_final and (run_id is None or j.run_id == run_id)]


def _orphan_reason(resource: Resource, view: _LedgerView) -> str | None:
    """Why nobody owns this resource, or None while a live runner drives it."""
    run_id = resource.run_id
    if not run_id or run_id not in view.runs:
        return "not in this ledger" + (f" (run {run_id})" if run_id else "")
    if resource.job_id:
        job = view.jobs.get(resource.job_id)
        if job is None:
            return f"job {resource.job_id} is not in this ledger"
        if job.state.is_final:
            return f"its job is {job.state.value}"
    elif not view.active_jobs(run_id):
        return f"run {run_id} has finished"
    if view.owner(run_id) is None:
        return f"run {run_id} has no live runner (its console was stopped or killed)"
    return None


def _foreign_and_unexpired(resource: Resource, view: _LedgerView) -> str | None:
    """A tagged resource of a run this ledger never saw, still inside its TTL, may be a colleague's live
    run on the same account: `--orphans` leaves it (its own dead-man's switch ends it); `--all` does not."""
    if resource.run_id in view.runs or resource.expires_at is None:
        return None
    if resource.expires_at <= datetime.now(UTC):
        return None
    until = resource.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return f"run {resource.run_id or '?'} is not in this ledger and lives until {until} (another console?)"


def _job_state(resource: Resource, view: _LedgerView) -> str | None:
    job = view.jobs.get(resource.job_id) if resource.job_id else None
    return job.state.value if job else None


def make_plan(settings: Settings, ledger: Ledger, scope: Scope, listing: Listing | None = None) -> Plan:
    """List (unless given a listing) and decide, per resource, what teardown would do. Changes nothing."""
    if scope.kind == "run":
        check_run_id(scope.run_id)  # a run the ledger does not know is found by its tag
    listing = listing or list_everything(settings, backends_to_list(settings, ledger, scope))
    view = _LedgerView(ledger)
    items: list[PlanItem] = []
    kept: list[PlanItem] = []
    for resource in listing.resources:
        if resource.kind in SHARED_KINDS:
            continue  # decided below, once the compute's fate is known
        state = _job_state(resource, view)
        if pools.pool_of(resource):
            action, why = pools.decide(resource, scope.kind, ledger)
            if action != pools.SKIP:
                (items if action == DESTROY else kept).append(PlanItem(resource, action, why, state))
            continue
        if scope.kind == "all":
            items.append(PlanItem(resource, DESTROY, "--all", state))
        elif scope.kind == "run":
            if resource.run_id == scope.run_id:
                items.append(PlanItem(resource, DESTROY, f"in run {scope.run_id}", state))
        else:
            reason = _orphan_reason(resource, view)
            foreign = _foreign_and_unexpired(resource, view)
            if foreign:
                kept.append(PlanItem(resource, KEEP, foreign, state))
            elif reason:
                items.append(PlanItem(resource, DESTROY, reason, state))
            else:
                kept.append(
                    PlanItem(
                        resource,
                        KEEP,
                        f"run {resource.run_id} is driven by process {view.owner(resource.run_id)}",
                        state,
                    )
                )
    _plan_shared(listing, items, kept)
    cancel = _jobs_to_cancel(scope, view, items)
    items.extend(_stale_entries(settings, scope, view, listing, cancel))
    return Plan(scope, items, kept, cancel, listing, datetime.now(UTC))


def _plan_shared(listing: Listing, items: list[PlanItem], kept: list[PlanItem]) -> None:
    going = {i.key for i in items}
    for resource in listing.resources:
        if resource.kind not in SHARED_KINDS:
            continue
        place = listing.origin[(resource.backend, resource.kind, resource.id)].place
        users = [
            r
            for r in listing.resources
            if r.backend == resource.backend
            and listing.origin[(r.backend, r.kind, r.id)].place == place
            and r.kind not in SHARED_KINDS
            and r.kind != "task-definition"
            and (r.backend, r.kind, r.id) not in going
        ]
        if users:
            why = f"shared, still used by {len(users)} live {resource.backend} resource(s)"
            kept.append(PlanItem(resource, KEEP, why))
        else:
            items.append(PlanItem(resource, DESTROY, "shared by fceval-tui compute, and none is left"))


def _jobs_to_cancel(scope: Scope, view: _LedgerView, items: list[PlanItem]) -> list[str]:
    """Active jobs whose compute goes away: the ledger first, so no runner retries them."""
    if scope.kind == "all":
        return [j.id for j in view.active_jobs()]
    if scope.kind == "run":
        return [j.id for j in view.active_jobs(scope.run_id)]
    ids = {i.resource.job_id for i in items if i.resource.job_id}
    return [j.id for j in view.active_jobs() if j.id in ids]


def _stale_entries(
    settings: Settings, scope: Scope, view: _LedgerView, listing: Listing, cancel: list[str]
) -> list[PlanItem]:
    """Ledger entries claiming compute that is gone (checked only where their run's backend was listed)."""
    from fceval_tui.services.runner import run_settings

    present = {(r.backend, r.id) for r in listing.resources}
    stale = []
    for job in view.active_jobs():
        if not job.resource_id or (job.backend, job.resource_id) in present:
            continue
        where = run_settings(settings, view.runs[job.run_id])
        if (job.backend, place_of(job.backend, where)) not in listing.listed_places:
            continue
        in_scope = job.id in cancel or (scope.kind == "orphans" and view.owner(job.run_id) is None)
        if not in_scope:
            continue
        if job.id not in cancel:
            cancel.append(job.id)
        entry = Resource(
            backend=job.backend,
            kind=LEDGER_KIND,
            id=job.id,
            state=job.state.value,
            run_id=job.run_id,
            job_id=job.id,
            started_at=job.started_at,
            cost_usd=job.cost_usd,
            detail={"resource_id": job.resource_id},
        )
        stale.append(
            PlanItem(entry, CANCEL, f"the ledger says {job.state.value} but {job.resource_id} is gone", job.state.value)
        )
    return stale


# -- executing ---------------------------------------------------------------------------------


def find_orphans(settings: Settings, ledger: Ledger) -> list[Resource]:
    """Orphaned resources, for the console's start-up notice. Backends that cannot be listed are logged."""
    plan = make_plan(settings, ledger, Scope.orphans())
    for backend, why in plan.listing.unlisted.items():
        log.warning("could not look for orphans on %s: %s", backend, why)
    return [i.resource for i in plan.items if i.action == DESTROY]
