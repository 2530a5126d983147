"""A Fargate task's container through `aws ecs execute-command --interactive` (ECS Exec).

ECS Exec has no one-shot API: `run` starts an interactive session whose command is a marker-
wrapped `sh -c` script (see transports.markers), and recovers the exit code from the markers,
since the CLI exits 0 whatever the command did. Transient failures before the command started
(agent not running yet, target not connected, throttling) are retried with backoff; a session
that dropped after the command started is not re-run (it may not be idempotent).

Each session runs on a pseudo-terminal and in a process group of its own (transports.pty_run):
session-manager-plugin reads and sets its stdin's terminal, so it must never inherit the console's.
Through that terminal the command's stderr arrives merged into its stdout; `CommandResult.stderr`
holds only what the CLI and the plugin printed around the command.

The command string is visible in `ps` here and in the ExecuteCommand API request (CloudTrail), so
`run` takes no stdin (it would have to travel inside the command): nothing but argv built by the
console goes there. `run_typed` carries input the other way, through the session itself: once the
command has turned echo off and printed its begin marker, the input is typed into the terminal as
base64 lines (printable, short of the terminal's line limit), read up to their known length, decoded
and checked for its length on the far side, then given to the command as its stdin. Each session takes at most
`max_typed_input_bytes`: large pastes into Session Manager sessions have been reported to stall and
drop the connection (amazon-ssm-agent issue 149), so larger input goes in several sessions.
Commands run as root in the container whatever its user (AWS, "Monitor Amazon ECS containers with
ECS Exec", Considerations), so they reach a job's tmux server on its socket.
"""

from __future__ import annotations

import base64
import shlex
import shutil
from collections.abc import Sequence

from fceval_tui.errors import PermanentError, TransientError
from fceval_tui.transports.aws_cli import aws_cli_argv
from fceval_tui.transports.base import CommandResult, Stream, Transport
from fceval_tui.transports.local import ProcessStream
from fceval_tui.transports.markers import Markers, parse_marked, wrap_command
from fceval_tui.transports.pty_run import Feed, run_on_pty
from fceval_tui.transports.retry import Hint, Retryable, RetryPolicy, expired_credentials, retry, transient_hint

# The CLI exits 0 once ExecuteCommand has succeeded, whatever the plugin did next.
_NOT_STARTED = Hint(
    "session-manager-plugin ended the session before the command started",
    "retry; if it keeps happening check the task can reach the ssmmessages endpoint and that "
    "session-manager-plugin works (`session-manager-plugin --version`)",
)


# Read exactly the typed base64 (no end-of-file needed, so the terminal's mode does not matter), decode it
# to a private file, check its length, then run the command on it. $1: the length; $2: the base64's.
_TYPED = (
    'n=$1; b=$2; shift 2; f=$(mktemp) || exit 125; head -c "$b" | base64 -d > "$f" && '
    '[ $(($(wc -c < "$f"))) -eq "$n" ] || '
    '{ echo "fceval-tui: the typed input arrived damaged" >&2; rm -f "$f"; exit 125; }; '
    '"$@" < "$f"; rc=$?; rm -f "$f"; exit $rc'
)
TYPED_INPUT_BYTES = 24_000  # per session: 32 KB of base64 typed


class EcsExecTransport(Transport):
    def __init__(
        self,
        cluster: str,
        task: str,
        container: str,
        *,
        region: str | None = None,
        profile: str | None = None,
        command_prefix: Sequence[str] = (),
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.cluster = cluster
        self.task = task
        self.container = container
        self.region = region
        self.profile = profile
        self.command_prefix = tuple(command_prefix)
        self.retry_policy = retry_policy or RetryPolicy()

    def exec_argv(self, command: str) -> list[str]:
        """The local argv running `command` (a shell command line for the container) via ECS Exec."""
        return aws_cli_argv(
            self.command_prefix,
            self.region,
            self.profile,
            "ecs",
            "execute-command",
            "--cluster",
            self.cluster,
            "--task",
            self.task,
            "--container",
            self.container,
            "--interactive",
            "--command",
            command,
        )

    @property
    def max_stdin_bytes(self) -> int | None:
        return 0  # see the module doc: no stdin channel

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60.0) -> CommandResult:
        if stdin:
            raise PermanentError(
                "ECS Exec cannot pass stdin to a command without putting it in the command line "
                "(visible in `ps` and CloudTrail)",
                fix="type the text into the session instead (`fceval-tui attach JOB`)",
            )
        markers = Markers()
        return self._run_marked("sh -c " + shlex.quote(wrap_command(argv, markers)), markers, timeout)

    @property
    def max_typed_input_bytes(self) -> int:
        return TYPED_INPUT_BYTES

    def run_typed(self, argv: Sequence[str], data: bytes, *, timeout: float = 60.0) -> CommandResult:
        if len(data) > TYPED_INPUT_BYTES:
            raise ValueError(f"{len(data)} bytes is more than one session takes ({TYPED_INPUT_BYTES})")
        markers = Markers()
        typed = base64.encodebytes(data)
        inner = ["sh", "-c", _TYPED, "sh", str(len(data)), str(len(typed)), *argv]
        script = "stty -echo 2>/dev/null; " + wrap_command(inner, markers)
        # Typed once the begin marker shows: the far side reads, and echo is off, from then on.
        feed = Feed(markers.begin.encode(), typed)
        return self._run_marked("sh -c " + shlex.quote(script), markers, timeout, feed)

    def _run_marked(self, command: str, markers: Markers, timeout: float, feed: Feed | None = None) -> CommandResult:
        local_argv = self.exec_argv(command)

        def attempt() -> CommandResult:
            try:
                proc = run_on_pty(local_argv, timeout, feed=feed)
            except FileNotFoundError as exc:
                raise PermanentError(
                    f"{local_argv[0]!r} is not installed or not on PATH",
                    fix="install the AWS CLI and session-manager-plugin",
                ) from exc
            except TimeoutError as exc:
                raise TimeoutError(f"ECS Exec command did not finish within {timeout}s") from exc
            text = proc.output.decode("utf-8", "replace")
            out = parse_marked(text, markers)
            if out.exit_code is not None:
                return CommandResult(out.exit_code, out.payload, out.other)
            expired = None if out.started else expired_credentials(out.other)
            if expired is not None:
                raise expired
            hint = transient_hint(text)
            if not out.started and hint is not None:
                raise Retryable(hint, out.other or f"aws exited {proc.returncode}")
            if out.started:
                raise TransientError(
                    f"ECS Exec session to {self.task} dropped before the command finished: {out.other[-300:]}",
                    fix="retry; if it keeps happening check the task's network path to ssmmessages",
                )
            if proc.returncode == 0:
                raise Retryable(_NOT_STARTED, out.other or "aws exited 0 and printed nothing")
            raise PermanentError(
                f"ECS Exec to {self.task} failed (aws exited {proc.returncode}): {out.other[-500:]}",
                fix="check the task has enableExecuteCommand=true, its role allows ssmmessages:*, "
                "and session-manager-plugin is installed",
            )

        return retry(attempt, self.retry_policy, f"ECS Exec into {self.task}")

    def open_stream(self, argv: Sequence[str]) -> Stream:
        return ProcessStream(self.exec_argv(shlex.join(argv)), use_pty=True)

    def interactive_argv(self, argv: Sequence[str]) -> list[str]:
        return self.exec_argv(shlex.join(argv))

    def can_stream(self) -> bool:
        return shutil.which("session-manager-plugin") is not None

    def describe(self) -> str:
        return f"ECS Exec {self.task}/{self.container}"
