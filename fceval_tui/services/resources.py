"""The live resources behind the runs, with teardown's own orphan rules (the console's resources view
and `fceval-tui resources` show the same thing); a warm pool's instance also says which jobs are on it
and how long it has been idle. A job's current resource is priced at the hourly price its attempt
recorded (an EC2 spot attempt: the spot price it paid), else at the backend's table estimate.
Blocking: call from a worker thread."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

from fceval_tui.backends.base import Resource
from fceval_tui.config import Settings
from fceval_tui.domain.models import iso, utcnow
from fceval_tui.domain.prices import cost_so_far
from fceval_tui.ledger import Ledger
from fceval_tui.services import teardown
from fceval_tui.services.pool_view import InstanceRow, rows_by_instance

HOURLY, PRICE_SOURCE = "hourly_usd", "price_source"  # in a resource's detail once priced from the ledger


@dataclass(frozen=True)
class ResourceListing:
    resources: list[Resource]
    orphans: dict[str, str]  # resource id -> why teardown --orphans would remove it
    errors: list[str]  # backends that could not be listed, and why
    pools: dict[str, InstanceRow] = field(default_factory=dict)  # a pool instance's id -> its row

    def to_json(self) -> dict:
        return {
            "resources": [
                {
                    "backend": r.backend,
                    "kind": r.kind,
                    "id": r.id,
                    "state": r.state,
                    "run_id": r.run_id,
                    "job_id": r.job_id,
                    "started_at": iso(r.started_at),
                    "expires_at": iso(r.expires_at),
                    "cost_usd": round(r.cost_usd, 4),
                    "hourly_usd": r.detail.get(HOURLY),
                    "price_source": r.detail.get(PRICE_SOURCE),
                    "orphan": self.orphans.get(r.id),
                    **(self._pool_json(r.id) if r.id in self.pools else {}),
                }
                for r in self.resources
            ],
            "errors": self.errors,
        }

    def _pool_json(self, instance_id: str) -> dict:
        row = self.pools[instance_id]
        idle = None if row.idle_seconds is None else round(row.idle_seconds)
        return {"pool": row.pool, "jobs": list(row.instance.jobs), "idle_seconds": idle}


def list_resources(settings: Settings, ledger: Ledger, now: datetime | None = None) -> ResourceListing:
    scope = teardown.Scope.orphans()
    listing = teardown.list_everything(settings, teardown.backends_to_list(settings, ledger, scope))
    plan = teardown.make_plan(settings, ledger, scope, listing)
    orphans = {item.resource.id: item.reason for item in plan.items if item.action == teardown.DESTROY}
    errors = [f"{name}: {why}" for name, why in listing.unlisted.items()]
    resources = priced_as_recorded(ledger, listing.resources, now or utcnow())
    return ResourceListing(resources, orphans, errors, rows_by_instance(settings, ledger))


def priced_as_recorded(ledger: Ledger, resources: list[Resource], now: datetime) -> list[Resource]:
    """Each job's current resource at the hourly price its attempt recorded, where one was."""
    prices = {}
    for run_id in sorted({r.run_id for r in resources if r.run_id and r.job_id}):
        jobs = {job.id: job for job in ledger.jobs(run_id=run_id)}  # none for another console's run
        for cost in ledger.run_attempt_costs(run_id):
            job = jobs.get(cost.job_id)
            if job is not None and job.resource_id and cost.attempt == job.attempts and cost.hourly_usd is not None:
                prices[(job.id, job.resource_id)] = cost
    out = []
    for r in resources:
        cost = prices.get((r.job_id, r.id))
        if cost is None:
            out.append(r)
            continue
        detail = {**r.detail, HOURLY: cost.hourly_usd, PRICE_SOURCE: cost.price_source}
        billed = round(cost_so_far(cost.hourly_usd, r.started_at, now), 6)
        out.append(dataclasses.replace(r, cost_usd=billed, detail=detail))
    return out
