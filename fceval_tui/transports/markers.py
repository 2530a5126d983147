"""Exit-code markers around a command run through an interactive session, and its chatter removed.

`aws ecs execute-command` and `aws ssm start-session` lose the remote exit code (the CLI exits 0
whatever the command did) and mix session-manager chatter into the output. `wrap_command` prints
a unique begin marker, runs the command, then prints a unique rc marker; `parse_marked` recovers
the payload and the exit code and drops the chatter.
"""

from __future__ import annotations

import base64
import shlex
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

# Lines the AWS CLI / session-manager-plugin print around every session (casing varies by version).
# Not "Cannot perform start session: ...": that is the plugin failing, and its words are the error.
_CHATTER = (
    "starting session with sessionid:",
    "exiting session with sessionid:",
    "the session manager plugin was installed successfully",
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
