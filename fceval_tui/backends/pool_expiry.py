"""Pushing a warm pool's dead-man's switch forward, batched: one Run Command per 50 instances writes the new
expiry into each instance's own file (pool_scripts.push_expiry), then one CreateTags call per 1,000 moves
the `fceval:expires-at` tag of every instance whose file was written. The call count depends on the
number of instances, never on the jobs on them.

Run Command's own status says whether the script ran everywhere it was sent (ListCommands: with MaxErrors
0 the command's status is Success only when every invocation succeeded). A batch that did not succeed is left as it was,
tags included: the tag never says later than the file, and those instances are due again at the next push.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from fceval_tui.backends import pool_scripts
from fceval_tui.backends.aws import AWS_ERRORS, classify
from fceval_tui.backends.aws_constants import EXPIRES_AT_TAG
from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.domain.models import iso
from fceval_tui.errors import BackendError
from fceval_tui.ledger_pools import PoolBook

SEND_TARGETS = 50  # SendCommand: at most 50 InstanceIds a call
TAG_RESOURCES = 1000  # CreateTags: at most 1,000 resource ids a call
COMMAND_TIMEOUT = 120.0
_RUNNING = ("Pending", "InProgress", "Cancelling")


@dataclass
class PushResult:
    pushed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # instance id -> why its batch failed


def push(
    ec2: Ec2Backend,
    book: PoolBook,
    instance_ids: list[str],
    until: datetime,
    sleep: Callable[[float], None] = time.sleep,
) -> PushResult:
    """Move the expiry of these instances to `until` (never earlier than it is): files, tags and ledger."""
    result = PushResult()
    epoch = int(until.timestamp())
    for start in range(0, len(instance_ids), SEND_TARGETS):
        batch = instance_ids[start : start + SEND_TARGETS]
        script = pool_scripts.push_expiry(ec2.settings.remote_work_dir, batch, epoch)
        try:
            status = _run(ec2, batch, script, sleep)
        except BackendError as exc:
            status = str(exc)
        if status == "Success":
            result.pushed += batch
        else:
            result.failed.update(dict.fromkeys(batch, status))
    for start in range(0, len(result.pushed), TAG_RESOURCES):
        batch = result.pushed[start : start + TAG_RESOURCES]
        try:
            ec2.aws.ec2.create_tags(Resources=batch, Tags=[{"Key": EXPIRES_AT_TAG, "Value": iso(until)}])
        except AWS_ERRORS as exc:
            raise classify(exc, f"ec2:CreateTags on {len(batch)} pool instance(s)") from exc
    book.set_expiry(result.pushed, until)
    return result


def _run(ec2: Ec2Backend, instance_ids: list[str], script: str, sleep: Callable[[float], None]) -> str:
    """Send one script to the instances and wait for the command's overall status."""
    try:
        command_id = ec2.aws.ssm.send_command(
            InstanceIds=instance_ids,
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [script], "executionTimeout": [str(int(COMMAND_TIMEOUT))]},
            MaxErrors="0",  # one failed instance fails the command: its status then says so
            Comment="fceval-tui pool expiry",
        )["Command"]["CommandId"]
    except AWS_ERRORS as exc:
        raise classify(exc, f"ssm:SendCommand to {len(instance_ids)} pool instance(s)") from exc
    # SSM ends the command itself after executionTimeout; the extra minute covers delivery.
    deadline = time.monotonic() + COMMAND_TIMEOUT + 60.0
    while True:
        try:
            commands = ec2.aws.ssm.list_commands(CommandId=command_id)["Commands"]
        except AWS_ERRORS as exc:
            raise classify(exc, f"ssm:ListCommands {command_id}") from exc
        status = commands[0]["Status"] if commands else "Unknown"
        if status not in _RUNNING:
            return status
        if time.monotonic() > deadline:
            return f"still {status} after {int(COMMAND_TIMEOUT + 60)} s"
        sleep(min(1.0, ec2.poll_interval))
