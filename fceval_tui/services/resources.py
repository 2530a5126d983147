"""The live resources behind the runs, with teardown's own orphan rules (the console's resources view
and `fceval-tui resources` show the same thing). Blocking: call from a worker thread."""

from __future__ import annotations

from dataclasses import dataclass

from fceval_tui.backends.base import Resource
from fceval_tui.config import Settings
from fceval_tui.domain.models import iso
from fceval_tui.ledger import Ledger
from fceval_tui.services import teardown


@dataclass(frozen=True)
class ResourceListing:
    resources: list[Resource]
    orphans: dict[str, str]  # resource id -> why teardown --orphans would remove it
    errors: list[str]  # backends that could not be listed, and why

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
                }
                for r in self.resources
            ],
            "errors": self.errors,
        }


def list_resources(settings: Settings, ledger: Ledger) -> ResourceListing:
    scope = teardown.Scope.orphans()
    listing = teardown.list_everything(settings, teardown.backends_to_list(settings, ledger, scope))
    plan = teardown.make_plan(settings, ledger, scope, listing)
    orphans = {item.resource.id: item.reason for item in plan.items if item.action == teardown.DESTROY}
    errors = [f"{name}: {why}" for name, why in listing.unlisted.items()]
    return ResourceListing(listing.resources, orphans, errors)
