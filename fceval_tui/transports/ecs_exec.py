"""A Fargate task's container through `aws ecs execute-command --interactive` (ECS Exec).

ECS Exec has no one-shot API: `run` starts an interactive session whose command is a marker-
wrapped `sh -c` script (see transports.markers), and recovers the exit code from the markers,
since the CLI exits 0 whatever the command did. Transient failures before the command started
(agent not running yet, target not connected, throttling) are retried with backoff; a session
that dropped after the command started is not re-run (it may not be idempotent).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence

from fceval_tui.errors import PermanentError, TransientError
from fceval_tui.transports.aws_cli import aws_cli_argv
from fceval_tui.transports.base import CommandResult, Stream, Transport
from fceval_tui.transports.local import ProcessStream
from fceval_tui.transports.markers import Markers, parse_marked, wrap_command
from fceval_tui.transports.retry import Retryable, RetryPolicy, retry, transient_hint

# The whole command travels as one CLI argument and one API field; keep embedded stdin modest.
MAX_STDIN = 24_000


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
        runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
    ) -> None:
        self.cluster = cluster
        self.task = task
        self.container = container
        self.region = region
        self.profile = profile
        self.command_prefix = tuple(command_prefix)
        self.retry_policy = retry_policy or RetryPolicy()
        self._runner = runner

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
        return MAX_STDIN

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60.0) -> CommandResult:
        if stdin is not None and len(stdin) > MAX_STDIN:
            raise PermanentError(
                f"stdin of {len(stdin)} bytes is too large for ECS Exec",
                fix="stage large input through S3 (the mirror's paste takes an uploader)",
            )
        markers = Markers()
        command = "sh -c " + shlex.quote(wrap_command(argv, markers, stdin))
        local_argv = self.exec_argv(command)

        def attempt() -> CommandResult:
            try:
                proc = self._runner(local_argv, capture_output=True, timeout=timeout, check=False)
            except FileNotFoundError as exc:
                raise PermanentError(
                    f"{local_argv[0]!r} is not installed or not on PATH",
                    fix="install the AWS CLI and session-manager-plugin",
                ) from exc
            except subprocess.TimeoutExpired as exc:
                raise TimeoutError(f"ECS Exec command did not finish within {timeout}s") from exc
            text = _text(proc.stdout) + "\n" + _text(proc.stderr)
            out = parse_marked(text, markers)
            if out.exit_code is not None:
                return CommandResult(out.exit_code, out.payload, out.other)
            hint = transient_hint(text)
            if not out.started and hint is not None:
                raise Retryable(hint, out.other or f"aws exited {proc.returncode}")
            if out.started:
                raise TransientError(
                    f"ECS Exec session to {self.task} dropped before the command finished: {out.other[-300:]}",
                    fix="retry; if it keeps happening check the task's network path to ssmmessages",
                )
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


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data
