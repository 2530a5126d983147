"""The live resources behind the runs, with teardown's own orphan rules (the console's resources view
and `fceval-tui resources` show the same thing); a warm pool's instance also says which jobs are on it
and how long it has been idle. Blocking: call from a worker thread."""

from __future__ import annotations

from dataclasses import dataclass, field

from fceval_tui.backends.base import Resource
from fceval_tui.config import Settings
from fceval_tui.domain.models import iso
from fceval_tui.ledger import Ledger
from fceval_tui.services import teardown
from fceval_tui.services.pool_view import InstanceRow, rows_by_instance


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


def list_resources(settings: Settings, ledger: Ledger) -> ResourceListing:
    scope = teardown.Scope.orphans()
    listing = teardown.list_everything(settings, teardown.backends_to_list(settings, ledger, scope))
    plan = teardown.make_plan(settings, ledger, scope, listing)
    orphans = {item.resource.id: item.reason for item in plan.items if item.action == teardown.DESTROY}
    errors = [f"{name}: {why}" for name, why in listing.unlisted.items()]
    return ResourceListing(listing.resources, orphans, errors, rows_by_instance(settings, ledger))
