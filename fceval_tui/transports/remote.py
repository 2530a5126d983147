"""Helpers shared by remote transports: exit-code markers, session-manager chatter, bounded retries.

`aws ecs execute-command` and `aws ssm start-session` lose the remote exit code (the CLI exits 0
whatever the command did) and mix session-manager chatter into the output. `wrap_command` prints
a unique begin marker, runs the command, then prints a unique rc marker; `parse_marked` recovers
the payload and the exit code and drops the chatter.

`retry` runs an attempt function with bounded exponential backoff and full jitter. Attempts
signal a transient failure by raising `Retryable`; after the last attempt the error raised is a
`TransientError` whose message names the likely cause and whose `fix` says what to do.
"""

from __future__ import annotations

import base64
import logging
import random
import re
import shlex
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from fceval_tui.errors import TransientError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Lines the AWS CLI / session-manager-plugin print around every session (casing varies by version).
_CHATTER = (
    "starting session with sessionid:",
    "exiting session with sessionid:",
    "the session manager plugin was installed successfully",
    "cannot perform start session: eof",
)


def is_chatter(line: str) -> bool:
    return line.strip().lower().startswith(_CHATTER)


@dataclass(frozen=True)
class Markers:
    """A pair of lines unique to one command invocation, so output from other commands cannot forge them."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def begin(self) -> str:
        return f"__FCEVAL_BEGIN_{self.token}__"

    @property
    def rc_prefix(self) -> str:
        return f"__FCEVAL_RC_{self.token}__="


def wrap_command(argv: Sequence[str], markers: Markers, stdin: bytes | None = None) -> str:
    """A POSIX shell script that runs `argv` (every word quoted) between the two markers.

    `stdin`, when given, is embedded base64-encoded (the interactive transports have no separate
    stdin channel). The rc marker starts on a fresh line; `parse_marked` removes that newline again.
    """
    if not argv:
        raise ValueError("empty argv")
    command = shlex.join(argv)
    if stdin is not None:
        encoded = base64.b64encode(stdin).decode("ascii")
        command = f"printf %s {encoded} | base64 -d | {command}"
    return (
        f"printf '%s\\n' {markers.begin}; {command}; __fceval_rc=$?; "
        f"printf '\\n%s%s\\n' {markers.rc_prefix} \"$__fceval_rc\""
    )


@dataclass(frozen=True)
class MarkedOutput:
    started: bool  # the begin marker was seen: the command ran (do not blindly retry it)
    exit_code: int | None  # None when the rc marker never arrived (connection lost mid-command)
    payload: str
    other: str  # output outside the markers, chatter removed (error messages from the CLI)


def parse_marked(text: str, markers: Markers) -> MarkedOutput:
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    begin = next((i for i, line in enumerate(lines) if line.strip() == markers.begin), None)
    rc_at = None
    exit_code = None
    if begin is not None:
        for i in range(len(lines) - 1, begin, -1):
            stripped = lines[i].strip()
            if stripped.startswith(markers.rc_prefix):
                rc_text = stripped[len(markers.rc_prefix) :]
                if rc_text.lstrip("-").isdigit():
                    rc_at, exit_code = i, int(rc_text)
                break
    if begin is None:
        inside, outside = [], lines
    elif rc_at is None:
        inside, outside = lines[begin + 1 :], lines[:begin]
    else:
        inside, outside = lines[begin + 1 : rc_at], lines[:begin] + lines[rc_at + 1 :]
    # Joining the lines between the markers drops exactly the newline printed before the rc marker.
    payload = "\n".join(inside)
    other = "\n".join(line for line in outside if line.strip() and not is_chatter(line))
    return MarkedOutput(begin is not None, exit_code, payload, other)


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
    """Bounded exponential backoff with full jitter: delay n is uniform in [0, min(cap, base * 2**n)]."""

    attempts: int = 6
    base: float = 1.0
    cap: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, min(self.cap, self.base * (2**attempt)))


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


def aws_cli_argv(
    command_prefix: Sequence[str], region: str | None, profile: str | None, *words: str, aws: str = "aws"
) -> list[str]:
    """`[*prefix, aws, --region R, --profile P, *words]`: an argv list, nothing is shell-parsed locally."""
    argv = [*command_prefix, aws]
    if region:
        argv += ["--region", region]
    if profile:
        argv += ["--profile", profile]
    return argv + list(words)
