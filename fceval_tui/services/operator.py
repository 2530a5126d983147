"""Who is operating the console, and the ledger's log of what operators did to machines (exec, forward)."""

from __future__ import annotations

import getpass
import hashlib
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fceval_tui.ledger import Ledger
    from fceval_tui.services.fleet_exec import MachineResult
    from fceval_tui.services.fleet_targets import Selection

COMMAND_KEPT = 500  # characters of an exec'd command kept in the ledger (its hash covers all of it)


def identity() -> str:
    """`user@host` of this process (the AWS caller ARN is in the preflight audit's report)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def record_exec(
    ledger: Ledger,
    selection: Selection,
    command: str,
    results: Iterable[MachineResult],
    command_ids: Iterable[str] = (),
    *,
    by: str,
    interrupted: bool = False,
) -> list[int]:
    """One `operator_exec` event per run touched (a pool's jobless instances under `pool:NAME`): who ran
    which command where, and each machine's exit code or outcome; never the output."""
    outcome = {r.machine.id: r.exit_code if r.exit_code is not None else r.label for r in results}
    runs: dict[str, list[str]] = {}
    for machine in selection.machines:
        owners = machine.run_ids or ((f"pool:{selection.pool}",) if selection.pool else ())
        for run_id in owners:
            runs.setdefault(run_id, []).append(machine.id)
    detail = {
        "by": by,
        "command": command[:COMMAND_KEPT],
        "sha256": hashlib.sha256(command.encode()).hexdigest(),
        "scope": selection.scope,
        "command_ids": list(command_ids),
    }
    if interrupted:
        detail["interrupted"] = True
    return [
        ledger.record(run_id, None, "operator_exec", **detail, targets={m: outcome.get(m, "no answer") for m in ids})
        for run_id, ids in runs.items()
    ]


def record_forward(ledger: Ledger, run_id: str, job_id: str, action: str, *, by: str, **detail) -> int:
    """`operator_forward` with action open or close, the target and ports (a forward's life in the log)."""
    return ledger.record(run_id, job_id, "operator_forward", by=by, action=action, **detail)
