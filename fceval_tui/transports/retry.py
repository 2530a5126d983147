"""Bounded retries for remote transports, and the likely cause and fix of each transient failure.

`retry` runs an attempt function with bounded exponential backoff and full jitter. Attempts
signal a transient failure by raising `Retryable`; after the last attempt the error raised is a
`TransientError` whose message names the likely cause and whose `fix` says what to do.

`expired_credentials` recognises credentials that expired or can no longer be refreshed, whether
botocore raised it in this process or an `aws` CLI child printed it: those pause a run, they never
end a job (see services.credentials).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fceval_tui.domain.backoff import full_jitter
from fceval_tui.errors import CredentialsExpired, TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Hint:
    cause: str
    fix: str


_THROTTLED = Hint(
    "AWS is throttling API calls (rate exceeded)",
    "lower the number of concurrent jobs (--concurrent) or wait; calls are retried automatically",
)
# (substring of an error code or message, hint); checked in order, case-sensitive like the AWS texts.
_TRANSIENT: tuple[tuple[str, Hint], ...] = (
    ("ThrottlingException", _THROTTLED),
    ("TooManyRequestsException", _THROTTLED),
    ("Rate exceeded", _THROTTLED),
    (
        "TargetNotConnected",
        Hint(
            "the target's SSM agent is not connected",
            "wait until the instance or task has finished booting; check it can reach the ssm and "
            "ssmmessages endpoints (NAT or VPC endpoints) and that its role allows ssmmessages:*",
        ),
    ),
    (
        "execute command agent isn",  # "isn't" and "isn’t" both occur
        Hint(
            "the ECS Exec agent in the task is not running yet",
            "wait until the task is RUNNING; the task must have enableExecuteCommand=true and a task "
            "role that allows ssmmessages:CreateControlChannel/CreateDataChannel/Open*",
        ),
    ),
    (
        "InvalidInstanceId",
        Hint(
            "the instance is not (yet) registered with SSM",
            "wait a minute after launch; the instance profile needs AmazonSSMManagedInstanceCore and "
            "the SSM agent must be running",
        ),
    ),
)


def transient_hint(text: str) -> Hint | None:
    """The hint for a transient failure mentioned in an error code or message, or None."""
    for needle, hint in _TRANSIENT:
        if needle in text:
            return hint
    return None


class Retryable(Exception):
    """Raised by an attempt to ask `retry` for another try."""

    def __init__(self, hint: Hint, detail: str) -> None:
        super().__init__(detail)
        self.hint = hint
        self.detail = detail


@dataclass
class RetryPolicy:
    """At most `attempts` tries, with `full_jitter` waits between them."""

    attempts: int = 6
    base: float = 1.0
    cap: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return full_jitter(attempt, self.base, self.cap, self.rng)


def retry(attempt: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    """Call `attempt` until it returns; `Retryable` means try again (at most `policy.attempts` times)."""
    last: Retryable | None = None
    for n in range(policy.attempts):
        try:
            return attempt()
        except Retryable as exc:
            last = exc
            if n + 1 < policy.attempts:
                pause = policy.delay(n)
                log.warning("%s: %s; retry %d/%d in %.1fs", what, exc.hint.cause, n + 1, policy.attempts - 1, pause)
                policy.sleep(pause)
    assert last is not None
    raise TransientError(
        f"{what} failed after {policy.attempts} attempts: {last.hint.cause} ({_one_line(last.detail)})",
        fix=last.hint.fix,
    ) from last


def _one_line(text: str, limit: int = 300) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# AWS error codes for an expired session token: ExpiredToken (STS, S3, IAM), ExpiredTokenException
# (JSON protocols: SSM, ECS, Batch, Logs; "Common Errors" of each API reference), RequestExpired
# (EC2's answer for expired temporary credentials as well as for a late request).
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
# botocore's exceptions for credentials it cannot refresh: the SSO token expired or was never
# loaded, an assumed role needs an MFA code, a credential process failed.
EXPIRED_EXCEPTIONS = frozenset(
    {
        "UnauthorizedSSOTokenError",
        "TokenRetrievalError",
        "SSOTokenLoadError",
        "RefreshWithMFAUnsupportedError",
        "CredentialRetrievalError",
    }
)
# The same, as the `aws` CLI prints them on stderr: "An error occurred (CODE) when calling the OP
# operation: ..." for an AWS error (awscli/errorhandler.py, behind "aws: [ERROR]: " in v2), and
# botocore's own message (the `fmt` of each exception above) for the others.
_EXPIRED_TEXTS = (
    *(f"({code})" for code in sorted(EXPIRED_CODES)),
    "The SSO session associated with this profile has expired",
    "Error when retrieving token from",
    "Error loading SSO Token",
    "Cannot refresh credentials: MFA token required",
    "Error when retrieving credentials from",
)


def expired_credentials(error: BaseException | str) -> CredentialsExpired | None:
    """A CredentialsExpired for a botocore exception or `aws` CLI output saying the credentials
    expired (or cannot be refreshed); None for anything else."""
    if isinstance(error, str):
        found = next((line for line in error.splitlines() if any(t in line for t in _EXPIRED_TEXTS)), None)
        return CredentialsExpired(_one_line(found)) if found is not None else None
    code = str((getattr(error, "response", None) or {}).get("Error", {}).get("Code", ""))
    named = {cls.__name__ for cls in type(error).__mro__} & EXPIRED_EXCEPTIONS
    if code in EXPIRED_CODES or named:
        return CredentialsExpired(_one_line(str(error)))
    return None
