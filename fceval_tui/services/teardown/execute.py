"""Carrying out a teardown plan: cancel its jobs in the ledger, destroy its resources (shared ones
last), then list again so that what is left is reported, never assumed gone."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fceval_tui.backends.base import Resource
from fceval_tui.config import Settings
from fceval_tui.domain.states import JobState
from fceval_tui.errors import BackendError, TransientError, UserError
from fceval_tui.ledger import Ledger
from fceval_tui.services import staging_objects
from fceval_tui.services.teardown import pools
from fceval_tui.services.teardown.plan import (
    CANCEL,
    DESTROY,
    GOING_STATES,
    RETRY_PAUSE,
    SETTLE_SECONDS,
    SHARED_KINDS,
    Plan,
    PlanItem,
    Target,
    list_everything,
)

log = logging.getLogger(__name__)


@dataclass
class Result:
    plan: Plan
    cancelled: list[str] = field(default_factory=list)
    destroyed: list[PlanItem] = field(default_factory=list)
    failed: list[tuple[PlanItem, str]] = field(default_factory=list)
    left: list[Resource] = field(default_factory=list)
    unlisted_after: dict[str, str] = field(default_factory=dict)
    still_active: list[str] = field(default_factory=list)  # jobs the ledger could not cancel

    @property
    def clean(self) -> bool:
        return not (self.failed or self.left or self.unlisted_after or self.plan.listing.unlisted or self.still_active)

    def to_json(self) -> dict:
        data = self.plan.to_json()
        data.update(
            {
                "cancelled_jobs": self.cancelled,
                "destroyed": [i.resource.id for i in self.destroyed],
                "failed": [{"id": i.resource.id, "error": error} for i, error in self.failed],
                "left": [{"backend": r.backend, "kind": r.kind, "id": r.id, "state": r.state} for r in self.left],
                "unlisted_after": self.unlisted_after,
                "still_active": self.still_active,
                "clean": self.clean,
            }
        )
        return data


def _destroy(target: Target, resource: Resource, backends: dict) -> None:
    """Destroy with the settings of the place it was found in (a run's region, cluster, bucket)."""
    if resource.backend == staging_objects.BACKEND:
        staging_objects.delete_prefix(target.settings, resource)
        return
    from fceval_tui.backends import make_backend

    key = (target.backend, target.place)
    backend = backends.get(key)
    if backend is None:
        backend = backends[key] = make_backend(target.backend, target.settings)
    backend.destroy_resource(resource)


def execute(
    settings: Settings,
    ledger: Ledger,
    plan: Plan,
    on_progress: Callable[[str], None] | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> Result:
    """Cancel the plan's jobs in the ledger, destroy its resources, then list again. Idempotent."""
    from fceval_tui.services.job_actions import cancel_jobs
    from fceval_tui.services.operator import identity_for

    say = on_progress or (lambda message: None)
    result = Result(plan)
    by = identity_for(settings, {item.resource.backend for item in plan.items})  # logged with each action
    pending_jobs = list(plan.cancel_job_ids)
    while pending_jobs:
        try:
            cancel_jobs(ledger, settings, pending_jobs, reason="teardown", by=by)
            break
        except UserError as exc:
            # A job's compute could not be stopped (e.g. no credentials). Its ledger entry is cancelled
            # already and the destroy step below tries (and reports) its resource; go on with the rest.
            say(f"could not stop a cancelled job's compute: {exc}")
        still = [j for j in pending_jobs if not ledger.get_job(j).state.is_final]
        if len(still) == len(pending_jobs):
            break  # no progress; the jobs left active are reported below
        pending_jobs = still
    result.still_active = [j for j in plan.cancel_job_ids if not ledger.get_job(j).state.is_final]
    if result.still_active:
        say(f"still active in the view: {', '.join(result.still_active)}")
    result.cancelled = [j for j in plan.cancel_job_ids if ledger.get_job(j).state is JobState.CANCELLED]
    say(f"cancelled {len(result.cancelled)} job(s) in the ledger")
    for item in plan.items:
        if item.action == CANCEL:  # a ledger entry whose compute is gone: done once its job is final
            if ledger.get_job(item.resource.id).state.is_final:
                result.destroyed.append(item)
            else:
                result.failed.append((item, "the job could not be cancelled in the ledger"))
    pending = [i for i in plan.items if i.action == DESTROY]
    backends: dict = {}
    deadline = time.monotonic() + settle_seconds
    while pending:
        # Shared groups go last: AWS refuses to delete them while instances still use them.
        compute_left = any(i.resource.kind not in SHARED_KINDS for i in pending)
        batch = [i for i in pending if not (compute_left and i.resource.kind in SHARED_KINDS)]
        retry = _destroy_batch(ledger, batch, backends, result, say, by)
        pending = [i for i in pending if i not in batch] + retry
        if retry and time.monotonic() >= deadline:
            result.failed.extend((i, "still refused after waiting; run teardown again later") for i in retry)
            break
        if retry:
            time.sleep(RETRY_PAUSE)
    pools.forget_destroyed(ledger, [i.resource for i in result.destroyed], plan.scope.kind)
    _verify(settings, ledger, result)
    return result


def _destroy_batch(ledger, batch, backends, result, say, by: str) -> list[PlanItem]:
    """Destroy concurrently; return the items that hit a transient error (to retry)."""

    def one(item: PlanItem) -> tuple[PlanItem, Exception | None]:
        r = item.resource
        ledger.record(
            r.run_id or "",
            r.job_id,
            "teardown_destroy",
            by=by,
            backend=r.backend,
            resource_kind=r.kind,
            resource=r.id,
            reason=item.reason,
        )
        try:
            _destroy(result.plan.listing.origin[item.key], r, backends)
        except (UserError, BackendError, NotImplementedError) as exc:
            return item, exc
        return item, None

    retry = []
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="teardown") as pool:
        for item, exc in pool.map(one, batch):
            r = item.resource
            if exc is None:
                result.destroyed.append(item)
                say(f"removed {r.kind} {r.id}")
            elif isinstance(exc, TransientError):
                retry.append(item)
                say(f"{r.kind} {r.id}: {exc} (retrying)")
            else:
                result.failed.append((item, str(exc)))
                ledger.record(
                    r.run_id or "",
                    r.job_id,
                    "teardown_failed",
                    backend=r.backend,
                    resource_kind=r.kind,
                    resource=r.id,
                    error=str(exc),
                )
                say(f"could not remove {r.kind} {r.id}: {exc}")
    return retry


def _verify(settings: Settings, ledger: Ledger, result: Result) -> None:
    listing = list_everything(settings, result.plan.listing.targets)
    result.unlisted_after = listing.unlisted
    present = {(r.backend, r.kind, r.id): r for r in listing.resources}
    for item in result.plan.items:
        if item.action != DESTROY:
            continue
        now = present.get(item.key)
        if now is not None and now.state.lower() not in GOING_STATES:
            result.left.append(now)
    for item in result.destroyed:
        r = item.resource
        left = any((x.backend, x.kind, x.id) == item.key for x in result.left)
        ledger.record(
            r.run_id or "", r.job_id, "teardown_done", backend=r.backend, resource_kind=r.kind, resource=r.id, left=left
        )
