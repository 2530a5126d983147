"""Teardown: find everything the console left running or stored, reconcile it with the ledger,
remove what is in scope, and check that nothing is left.

    plan = make_plan(settings, ledger, Scope.orphans())       # lists; changes nothing
    result = execute(settings, ledger, plan)                   # cancels jobs, destroys, lists again

Resources come from two sides: each backend's `list_resources` (by the ManagedBy tag, or the
private tmux socket) plus the S3 staging and inbox prefixes, and the ledger (jobs with a resource
id). Each is listed and destroyed with the settings of the place it lives in (`Target`: a run's own
region, profile, cluster, queue and bucket, from the ledger), never with today's settings alone;
orphans and `--all` look at every cloud backend wherever the console or a run in the ledger points. A
resource is an orphan when no live process owns it: its run is unknown to this ledger, its job is
final, or its run's runner is dead (a console killed with SIGKILL). A ledger entry whose resource
is gone, in a run nobody drives, is marked cancelled. Everything blocks: call from a worker thread.
"""

from fceval_tui.services.teardown.execute import Result, execute
from fceval_tui.services.teardown.plan import (
    CANCEL,
    DESTROY,
    KEEP,
    LEDGER_KIND,
    Listing,
    Plan,
    PlanItem,
    Scope,
    Target,
    backends_to_list,
    find_orphans,
    list_everything,
    make_plan,
)

__all__ = [
    "CANCEL",
    "DESTROY",
    "KEEP",
    "LEDGER_KIND",
    "Listing",
    "Plan",
    "PlanItem",
    "Result",
    "Scope",
    "Target",
    "backends_to_list",
    "execute",
    "find_orphans",
    "list_everything",
    "make_plan",
]
