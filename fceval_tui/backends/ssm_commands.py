"""One-shot shell scripts on an EC2 instance through SSM Run Command (AWS-RunShellScript).

The EC2 backend needs only "run this short script, give me its exit code and output". The full
output also goes to S3 because GetCommandInvocation returns at most 24,000 characters.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fceval_tui.backends.aws import AWS_ERRORS, classify, error_code
from fceval_tui.errors import TransientError
from fceval_tui.transports.base import CommandResult

INVOCATION_LIMIT = 24_000
_PENDING = {"Pending", "InProgress", "Delayed"}
_PLUGIN_DIR = "awsrunShellScript/0.awsrunShellScript"


class SsmCommands:
    def __init__(
        self,
        ssm,
        s3,
        output_bucket: str,
        output_prefix: str,
        poll_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ssm = ssm
        self.s3 = s3
        self.output_bucket = output_bucket
        self.output_prefix = output_prefix
        self.poll_interval = poll_interval
        self._sleep = sleep

    def run(self, instance_id: str, script: str, timeout: float = 120.0, comment: str = "") -> CommandResult:
        try:
            sent = self.ssm.send_command(
                InstanceIds=[instance_id],
                DocumentName="AWS-RunShellScript",
                Comment=comment[:100],
                Parameters={"commands": [script], "executionTimeout": [str(int(timeout))]},
                TimeoutSeconds=max(30, int(timeout)),
                OutputS3BucketName=self.output_bucket,
                OutputS3KeyPrefix=self.output_prefix,
            )
        except AWS_ERRORS as exc:
            raise classify(exc, f"ssm:SendCommand to {instance_id}") from exc
        command_id = sent["Command"]["CommandId"]
        deadline = time.monotonic() + timeout + 60
        while True:
            try:
                inv = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
            except AWS_ERRORS as exc:
                # Right after SendCommand the invocation may not be visible yet.
                if error_code(exc) != "InvocationDoesNotExist":
                    raise classify(exc, f"ssm:GetCommandInvocation on {instance_id}") from exc
                inv = {"Status": "Pending"}
            if inv["Status"] not in _PENDING:
                break
            if time.monotonic() > deadline:
                raise TransientError(f"SSM command on {instance_id} did not finish within {int(timeout)} s")
            self._sleep(self.poll_interval)
        stdout = inv.get("StandardOutputContent", "")
        stderr = inv.get("StandardErrorContent", "")
        if len(stdout) >= INVOCATION_LIMIT:
            stdout = self._full_output(command_id, instance_id, "stdout", stdout)
        code = inv.get("ResponseCode", -1)
        if inv["Status"] != "Success" and code in (0, None):
            code = -1  # timed out or cancelled: no exit code from the script itself
        return CommandResult(int(code), stdout, stderr)

    def _full_output(self, command_id: str, instance_id: str, stream: str, truncated: str) -> str:
        key = f"{self.output_prefix}/{command_id}/{instance_id}/{_PLUGIN_DIR}/{stream}"
        try:
            return self.s3.get_object(Bucket=self.output_bucket, Key=key)["Body"].read().decode(errors="replace")
        except AWS_ERRORS as exc:
            raise classify(exc, f"reading the full SSM output s3://{self.output_bucket}/{key}") from exc
