"""Who is operating, for the ledger's log of operator actions: the local user and host, and the AWS
caller's ARN where known. The ARN comes from sts:GetCallerIdentity, asked at most once per process, in a
background thread, and only when the action concerns AWS; an unreachable STS costs an action nothing
(it is logged without the ARN)."""

from __future__ import annotations

import getpass
import logging
import socket
import threading
from collections.abc import Iterable

from fceval_tui.config import Settings
from fceval_tui.domain.models import BACKENDS
from fceval_tui.errors import UserError

log = logging.getLogger(__name__)

AWS_BACKENDS = frozenset(BACKENDS) - {"local"}
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
