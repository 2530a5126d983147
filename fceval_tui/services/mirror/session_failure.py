"""Why a session to a pane could not be opened, in the remote's own words, with the fix.

A session (`aws ssm start-session`, `aws ecs execute-command`, or a local `tmux -C attach`) that
ends before tmux attached leaves only what was printed on its terminal: the aws CLI's
"An error occurred (Code) when calling the StartSession operation: ...", session-manager-plugin's
"SessionManagerPlugin is not found", or tmux's own "can't find session: $3" / "no sessions" /
"no server running on ..." (as the session's user: SSM sessions run as ssm-user, Run Command as
root). `classify` turns that text into a `SessionFailure`; `FailureStreak` decides when the same
failure has repeated enough to tell the user (3 identical in a row, or 5 s of them) instead of
retrying silently. A failure retrying cannot help ends the mirror with `SessionError` (a UserError:
the CLI exits 2, the console shows it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from fceval_tui.errors import UserError
from fceval_tui.transports.retry import transient_hint

# The aws CLI's and the plugin's own chatter around a session: not the remote's words.
_CHATTER = re.compile(
    r"^(Starting session with SessionId|Exiting session with sessionId|"
    r"The Session Manager plugin was installed successfully|Cannot perform start session: EOF$)",
    re.IGNORECASE,
)
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|P[^\x1b]*\x1b\\|.)")
_AWS_ERROR = re.compile(r"An error occurred \((?P<code>[\w.]+)\)")
_NO_SESSION = re.compile(
    r"no sessions|can't find session|session not found|no server running|error connecting to", re.IGNORECASE
)
STATUS_FIX = "the job has not started yet or its session has ended: see `fceval-tui status`"
MAX_WORDS = 300


@dataclass(frozen=True)
class SessionFailure:
    kind: str  # "plugin", "not-connected", "denied", "aws", "no-session", "other"
    words: str  # what the remote printed (one line)
    fix: str
    permanent: bool  # retrying cannot help
    at_once: bool = False  # certain from one failure: no need to see it repeat

    def message(self, where: str) -> str:
        return f"cannot open a session to the pane on {where}: {self.words}"


class SessionError(UserError):
    """Every session to the pane failed the same way, for a reason retrying cannot mend."""

    def __init__(self, failure: SessionFailure, where: str, attempts: int) -> None:
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        super().__init__(failure.message(where) + tries, failure.fix)
        self.failure = failure


def meaningful_text(data: bytes) -> str:
    """The lines a failed session printed, without terminal escapes and the CLI's session chatter."""
    text = _ESCAPES.sub("", data.decode("utf-8", "replace")).replace("\r", "\n")
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(line for line in lines if line and not _CHATTER.match(line))


def classify(data: bytes) -> SessionFailure | None:
    """What a session that ended before tmux attached says about why; None when it said nothing."""
    text = meaningful_text(data)
    if not text:
        return None
    words = _words(text)
    if "SessionManagerPlugin is not found" in text or "session-manager-plugin" in text.lower():
        return SessionFailure(
            "plugin",
            words,
            "install session-manager-plugin where the aws CLI finds it (also under FCEVAL_AWS_COMMAND_PREFIX): "
            "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html",
            permanent=True,
            at_once=True,
        )
    if "TargetNotConnected" in text:
        return SessionFailure(
            "not-connected",
            words,
            "the instance's SSM agent is not online for sessions: check `aws ssm describe-instance-information`, "
            "the instance role (AmazonSSMManagedInstanceCore, ssmmessages:*) and its route to the ssmmessages "
            "endpoint (NAT or a VPC endpoint); `fceval-tui audit` checks them",
            permanent=False,
        )
    error = _AWS_ERROR.search(text)
    if error:
        code = error.group("code")
        hint = transient_hint(text)
        if hint is not None:
            return SessionFailure("aws", words, f"{hint.cause}: {hint.fix}", permanent=False)
        if "AccessDenied" in code or "NotAuthorized" in code or "Unauthorized" in code:
            return SessionFailure(
                "denied",
                words,
                "allow the session for your identity: `fceval-tui audit --print-policy caller` "
                "(ssm:StartSession / ecs:ExecuteCommand on the job's instance or task)",
                permanent=True,
                at_once=True,
            )
        return SessionFailure("aws", words, f"{STATUS_FIX}; the message above is AWS's", permanent=True)
    if _NO_SESSION.search(text):
        return SessionFailure("no-session", words, STATUS_FIX, permanent=True)
    return SessionFailure("other", words, STATUS_FIX, permanent=False)


def _words(text: str) -> str:
    lines = text.split("\n")
    chosen = next((line for line in reversed(lines) if _AWS_ERROR.search(line) or _NO_SESSION.search(line)), None)
    words = chosen or " ".join(lines[-2:])
    return words if len(words) <= MAX_WORDS else words[: MAX_WORDS - 1] + "…"


class FailureStreak:
    """Consecutive failures of one session path: `add` says when the latest is due to be told."""

    def __init__(self, count: int = 3, seconds: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.count, self.seconds, self.clock = count, seconds, clock
        self.failure: SessionFailure | None = None
        self.repeats = 0
        self.attempts = 0
        self._since = 0.0

    def add(self, failure: SessionFailure) -> bool:
        now = self.clock()
        self.attempts += 1
        if self.failure is None or (failure.kind, failure.words) != (self.failure.kind, self.failure.words):
            self.failure, self.repeats, self._since = failure, 0, now
        self.repeats += 1
        return failure.at_once or self.repeats >= self.count or now - self._since >= self.seconds

    def reset(self) -> None:
        self.failure, self.repeats, self.attempts = None, 0, 0
