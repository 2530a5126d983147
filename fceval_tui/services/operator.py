"""Who is operating, and the ledger's log of what operators did to machines (exec, forward). The
operator is the local user and host, and the AWS caller's ARN where known: sts:GetCallerIdentity, asked
at most once per process, in a background thread, and only when the action concerns AWS; an unreachable
STS costs an action nothing (it is logged without the ARN)."""

from __future__ import annotations

import getpass
import hashlib
import logging
import socket
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fceval_tui.config import Settings
from fceval_tui.domain.models import BACKENDS
from fceval_tui.errors import UserError

if TYPE_CHECKING:
    from fceval_tui.ledger import Ledger
    from fceval_tui.services.fleet_exec import MachineResult
    from fceval_tui.services.fleet_targets import Selection

log = logging.getLogger(__name__)

AWS_BACKENDS = frozenset(BACKENDS) - {"local"}
COMMAND_KEPT = 500  # characters of an exec'd command kept in the ledger (its hash covers all of it)
STS_WAIT = 5.0  # how long a headless action (never the UI thread) waits for the ARN before logging without it


def local_identity() -> str:
    """`user@host` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class CallerLookup:
    """sts:GetCallerIdentity once, in a daemon thread; the ARN it answered, or None."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.arn: str | None = None

    def start(self, region: str, profile: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._ask, args=(region, profile), name="caller-identity", daemon=True
                )
                self._thread.start()

    def wait(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None and timeout > 0:
            thread.join(timeout)

    def _ask(self, region: str, profile: str) -> None:
        # boto3 is imported here, in the thread: never on the CLI's --help path or the UI's.
        from botocore.config import Config

        from fceval_tui.backends.aws import AWS_ERRORS, new_session

        config = Config(connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 2})
        try:
            # A Session of its own: Sessions are not thread-safe, and this thread may outlive a caller's.
            sts = new_session(region, profile).client("sts", config=config)
            self.arn = sts.get_caller_identity()["Arn"]
        except (UserError, *AWS_ERRORS) as exc:
            log.info("operator actions are logged without the AWS caller ARN: %s", exc)


_process = CallerLookup()


def start_lookup(settings: Settings, backends: Iterable[str] = ()) -> None:
    """Begin looking up the AWS caller (once per process, in the background) if AWS is in play: the
    settings' backend or one of `backends` is an AWS one. Returns at once."""
    if AWS_BACKENDS & {settings.backend, *backends}:
        _process.start(settings.region, settings.profile)


def identity(wait: float = 0.0) -> str:
    """`ARN (user@host)` once the lookup has answered, else `user@host`. Waits up to `wait` seconds for a
    lookup under way (0, never blocking, on the UI thread)."""
    _process.wait(wait)
    arn = _process.arn
    return f"{arn} ({local_identity()})" if arn else local_identity()


def identity_for(settings: Settings, backends: Iterable[str], wait: float = STS_WAIT) -> str:
    """For a headless action on jobs of `backends`: start the lookup if AWS is in play, then `identity`."""
    start_lookup(settings, backends)
    return identity(wait)


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
