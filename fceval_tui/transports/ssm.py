"""An EC2 instance through SSM: one-shot commands via SendCommand, streams via `aws ssm start-session`.

`run` sends AWS-RunShellScript and polls GetCommandInvocation; the command runs as root. Its
`stdin` travels base64-encoded inside the command (Run Command has no stdin) and is decoded by the
shell's `printf` builtin, so it appears in no process's argv on the instance (it is in the command's
parameters, which SSM keeps in its command history: never pass credentials). GetCommandInvocation
returns at most 24,000 characters of stdout (8,000 of stderr); longer output is read from the S3
copy the agent writes, with the instance's role, when the command was sent with OutputS3BucketName
(configure `output_bucket`).

Streams and interactive terminals are `aws ssm start-session` with AWS-StartInteractiveCommand
(session-manager-plugin needed locally): the command runs as `ssm-user` by default (not root), in
a pseudo-terminal with echo on. So a command that talks to something root started (a tmux server)
must name it explicitly (`tmux -S SOCKET`) and root must have let ssm-user in.

The boto3 clients are passed in, built by the caller from its one Session per profile/region.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import shlex
import shutil
import time
from collections.abc import Callable, Sequence

import botocore.exceptions
from botocore.exceptions import ClientError

from fceval_tui.errors import PermanentError, TransientError
from fceval_tui.transports.aws_cli import aws_cli_argv
from fceval_tui.transports.base import CommandResult, Stream, Transport
from fceval_tui.transports.local import ProcessStream
from fceval_tui.transports.retry import Retryable, RetryPolicy, expired_credentials, retry, transient_hint

log = logging.getLogger(__name__)

# GetCommandInvocation returns at most this much of each stream inline, counted in UTF-8 bytes: the
# agent keeps the limit minus the marker and appends the marker (amazon-ssm-agent, agent/contracts
# TruncateOutput; AWS: "GetCommandInvocation" StandardOutputContent, "24,000 characters").
STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000
TRUNCATION_MARK = "--output truncated--"
_FINAL = {"Success", "Failed", "Cancelled", "TimedOut"}


class SsmTransport(Transport):
    def __init__(
        self,
        ssm_client,
        instance_id: str,
        *,
        s3_client=None,
        output_bucket: str | None = None,
        output_prefix: str = "ssm-output",
        region: str | None = None,
        profile: str | None = None,
        command_prefix: Sequence[str] = (),
        retry_policy: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if output_bucket and s3_client is None:
            raise ValueError("output_bucket needs an s3_client")
        self.ssm = ssm_client
        self.s3 = s3_client
        self.instance_id = instance_id
        self.output_bucket = output_bucket
        self.output_prefix = output_prefix.strip("/")
        self.region = region
        self.profile = profile
        self.command_prefix = tuple(command_prefix)
        self.retry_policy = retry_policy or RetryPolicy(sleep=sleep)
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock

    # -- one-shot commands -------------------------------------------------------------------
    @property
    def max_stdin_bytes(self) -> int | None:
        return 32_000  # embedded base64 in the document parameter, which SSM caps

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 60.0) -> CommandResult:
        script = shlex.join(argv)
        if stdin is not None:
            if len(stdin) > (self.max_stdin_bytes or 0):
                raise PermanentError(
                    f"stdin of {len(stdin)} bytes is too large for SSM SendCommand",
                    fix="stage large input through S3 (the mirror's paste takes an uploader)",
                )
            script = f"printf %s {base64.b64encode(stdin).decode()} | base64 -d | {script}"
        command_id = self._send(script, timeout)
        return self._wait(command_id, timeout)

    def _send(self, script: str, timeout: float) -> str:
        params = {
            "InstanceIds": [self.instance_id],
            "DocumentName": "AWS-RunShellScript",
            "Parameters": {"commands": [script], "executionTimeout": [str(max(1, math.ceil(timeout)))]},
            "Comment": "fceval-tui",
        }
        if self.output_bucket:
            params["OutputS3BucketName"] = self.output_bucket
            params["OutputS3KeyPrefix"] = self.output_prefix

        def attempt() -> str:
            try:
                return self.ssm.send_command(**params)["Command"]["CommandId"]
            except ClientError as exc:
                raise _classify(exc) from exc
            except _UNREACHABLE as exc:
                # Nothing was sent: worth another try later, never the end of a job by itself.
                raise TransientError(f"cannot reach SSM to send a command to {self.instance_id}: {exc}") from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise expired_credentials(exc) or exc from exc

        return retry(attempt, self.retry_policy, f"SSM SendCommand to {self.instance_id}")

    def _wait(self, command_id: str, timeout: float) -> CommandResult:
        # SSM enforces executionTimeout itself; the extra minute covers delivery and polling delays.
        deadline = self._clock() + timeout + 60.0
        while True:
            try:
                inv = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=self.instance_id)
            except _UNREACHABLE:
                inv = None  # a read: look again, until the command's own deadline
            except (ClientError, botocore.exceptions.BotoCoreError) as exc:
                expired = expired_credentials(exc)
                if expired is not None or not isinstance(exc, ClientError):
                    raise expired or exc from exc
                code = exc.response.get("Error", {}).get("Code", "")
                # The invocation becomes visible a moment after SendCommand returns.
                if code != "InvocationDoesNotExist" and transient_hint(code + str(exc)) is None:
                    raise PermanentError(f"SSM GetCommandInvocation failed: {exc}") from exc
                inv = None
            if inv is not None and inv.get("Status") in _FINAL:
                return self._result(command_id, inv, timeout)
            if self._clock() > deadline:
                self._cancel(command_id)
                raise TimeoutError(f"SSM command {command_id} did not finish within {timeout}s")
            self._sleep(self.poll_interval)

    def _result(self, command_id: str, inv: dict, timeout: float) -> CommandResult:
        status = inv["Status"]
        if status == "TimedOut":
            raise TimeoutError(f"SSM command {command_id} timed out after {timeout}s on {self.instance_id}")
        stdout = inv.get("StandardOutputContent", "")
        stderr = inv.get("StandardErrorContent", "")
        if _truncated(stdout, STDOUT_LIMIT):
            stdout = self._read_s3(command_id, "stdout")
        if _truncated(stderr, STDERR_LIMIT):
            stderr = self._read_s3(command_id, "stderr")
        code = inv.get("ResponseCode", -1)
        if status == "Cancelled" and code == -1:
            code = 130
        return CommandResult(int(code), stdout, stderr)

    def _read_s3(self, command_id: str, stream: str) -> str:
        if not self.output_bucket:
            raise PermanentError(
                f"SSM truncated the {stream} of command {command_id} (it returns at most {STDOUT_LIMIT:,} bytes)",
                fix="configure an S3 output bucket for SSM commands so the full output can be read",
            )
        # SSM writes <prefix>/<command-id>/<instance-id>/<plugin>/<step>/stdout; list rather than
        # rebuild the plugin/step names, which differ between documents and agent versions.
        prefix = f"{self.output_prefix}/{command_id}/{self.instance_id}/"
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.output_bucket, Prefix=prefix):
            keys += [obj["Key"] for obj in page.get("Contents", []) if obj["Key"].endswith("/" + stream)]
        if not keys:
            raise TransientError(
                f"SSM output for {command_id} not found under s3://{self.output_bucket}/{prefix}",
                fix="check the instance role may s3:PutObject to the output bucket",
            )
        body = self.s3.get_object(Bucket=self.output_bucket, Key=sorted(keys)[0])["Body"].read()
        return body.decode("utf-8", "replace")

    def _cancel(self, command_id: str) -> None:
        try:
            self.ssm.cancel_command(CommandId=command_id, InstanceIds=[self.instance_id])
        except ClientError as exc:
            log.warning("could not cancel SSM command %s: %s", command_id, exc)

    # -- interactive sessions ----------------------------------------------------------------
    def session_argv(self, command: str | None = None) -> list[str]:
        words = ["ssm", "start-session", "--target", self.instance_id]
        if command is not None:
            words += [
                "--document-name",
                "AWS-StartInteractiveCommand",
                "--parameters",
                json.dumps({"command": [command]}),
            ]
        return aws_cli_argv(self.command_prefix, self.region, self.profile, *words)

    def open_stream(self, argv: Sequence[str]) -> Stream:
        return ProcessStream(self.session_argv(shlex.join(argv)), use_pty=True)

    def interactive_argv(self, argv: Sequence[str]) -> list[str]:
        return self.session_argv(shlex.join(argv))

    def can_stream(self) -> bool:
        return shutil.which("session-manager-plugin") is not None

    def describe(self) -> str:
        return f"SSM {self.instance_id}"


_UNREACHABLE = (botocore.exceptions.ConnectionError, botocore.exceptions.ReadTimeoutError)


def _classify(exc: ClientError) -> Exception:
    expired = expired_credentials(exc)
    if expired is not None:
        return expired
    code = exc.response.get("Error", {}).get("Code", "")
    hint = transient_hint(code + " " + str(exc))
    if hint is not None:
        return Retryable(hint, str(exc))
    if code in ("AccessDeniedException", "UnauthorizedOperation"):
        return PermanentError(
            f"SSM refused the call: {exc}", fix="allow ssm:SendCommand and ssm:GetCommandInvocation for the caller"
        )
    return PermanentError(f"SSM SendCommand failed: {exc}")


def _truncated(text: str, limit: int) -> bool:
    """Whether the agent cut this stream: its marker at the end, or as many bytes as it ever returns."""
    return text.endswith(TRUNCATION_MARK) or len(text.encode("utf-8")) >= limit - len(TRUNCATION_MARK)
