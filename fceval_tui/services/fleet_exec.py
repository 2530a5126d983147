"""`exec`: one shell command on every machine of a selection, the answers gathered and grouped.

EC2 instances: Run Command (AWS-RunShellScript, as root), at most 50 InstanceIds per SendCommand (the
API's limit), with MaxErrors 100% so that one failing instance does not stop the others (the default, 0,
stops sending after the first error). The command text is the document's `commands` parameter, as given:
the operator's own command line, never assembled from job data. Progress and results come from
ListCommandInvocations with Details (one paginated call per command per poll, whatever the number of
instances); a plugin's Output there holds at most 2,500 characters, so only an output that long is read
again with GetCommandInvocation (24,000 characters of stdout). SendCommand refuses a whole call when one
id is not an online managed instance (InvalidInstanceId): the batch is then narrowed with
DescribeInstanceInformation, the offline ones reported unreachable, and sent again to the rest.

ECS tasks: Fargate has no Run Command, so the command runs in each task's container through ECS Exec
(as root, in a pseudo-terminal: stdout and stderr arrive merged), at most `ECS_PARALLEL` sessions at once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from fceval_tui.backends.aws import (
    AWS_ERRORS,
    AwsClients,
    chunks,
    classify,
    error_code,
    online_instances,
    tag_filter,
)
from fceval_tui.backends.aws_constants import MANAGED_BY, MANAGED_BY_TAG, POOL_TAG
from fceval_tui.config import Settings
from fceval_tui.errors import BackendError
from fceval_tui.services.fleet_targets import Machine, Selection

log = logging.getLogger(__name__)

MAX_TARGETS = 50  # SendCommand InstanceIds
PLUGIN_OUTPUT_LIMIT = 2_500  # ListCommandInvocations CommandPlugin.Output
DELIVERY_TIMEOUT = 60  # SendCommand TimeoutSeconds: an instance that has not started the command by then never will
ECS_PARALLEL = 8
FINAL = {"Success", "Failed", "TimedOut", "Cancelled"}
ERROR_HEADER = "\n----------ERROR-------\n"  # how the agent's Output joins stdout and stderr


@dataclass(frozen=True)
class MachineResult:
    machine: Machine
    status: str  # Run Command's final invocation status, or Unreachable / NoAnswer
    exit_code: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.status == "Success" and self.exit_code == 0

    @property
    def label(self) -> str:
        if self.ok:
            return "ok"
        if self.status in ("Success", "Failed") and self.exit_code is not None and self.exit_code >= 0:
            return f"exit {self.exit_code}"
        return {"TimedOut": "timed out", "NoAnswer": "no answer", "Cancelled": "cancelled"}.get(
            self.status, self.status.lower()
        )

    def to_json(self) -> dict:
        return {
            "machine": self.machine.id,
            "backend": self.machine.backend,
            "jobs": list(self.machine.jobs),
            "status": self.status,
            "exit_code": self.exit_code,
            "output": self.output,
        }


@dataclass(frozen=True)
class ResultGroup:
    """Machines that answered alike: the same outcome and the same output."""

    label: str
    output: str
    results: tuple[MachineResult, ...]

    @property
    def ok(self) -> bool:
        return self.results[0].ok


@dataclass
class ExecReport:
    command: str
    selection: Selection
    results: list[MachineResult]
    command_ids: list[str]
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        return self.interrupted or not all(r.ok for r in self.results)

    def groups(self) -> list[ResultGroup]:
        """Identical answers together, the largest group first (ties: ok first, then by label)."""
        grouped: dict[tuple[str, str], list[MachineResult]] = {}
        for result in self.results:
            grouped.setdefault((result.label, result.output), []).append(result)
        groups = [ResultGroup(label, output, tuple(rs)) for (label, output), rs in grouped.items()]
        return sorted(groups, key=lambda g: (-len(g.results), not g.ok, g.label))

    def to_json(self) -> dict:
        return {
            "command": self.command,
            "scope": self.selection.scope,
            "command_ids": self.command_ids,
            "ok": not self.failed,
            "groups": [
                {
                    "count": len(g.results),
                    "result": g.label,
                    "output": g.output,
                    "machines": [r.machine.id for r in g.results],
                }
                for g in self.groups()
            ],
            "results": [r.to_json() for r in self.results],
            "skipped": [{"job": job, "why": why} for job, why in self.selection.skipped],
        }


Progress = Callable[[MachineResult], None]


def pool_instance_ids(ec2, pool: str) -> list[str]:
    """The running instances tagged as members of `pool` (and as the console's)."""
    filters = [
        tag_filter(POOL_TAG, pool),
        tag_filter(MANAGED_BY_TAG, MANAGED_BY),
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    try:
        pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
        return sorted(i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"])
    except AWS_ERRORS as exc:
        raise classify(exc, f"listing the instances of pool {pool}") from exc


class RunCommandFleet:
    """Run Command on many instances: batches of 50, one ListCommandInvocations per batch and poll."""

    def __init__(
        self,
        ssm,
        *,
        poll_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ssm = ssm
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock
        self.command_ids: list[str] = []
        self._waiting: dict[str, dict[str, Machine]] = {}  # command id -> instance id -> machine

    def run(self, machines: Sequence[Machine], command: str, timeout: int, progress: Progress) -> list[MachineResult]:
        results: list[MachineResult] = []

        def done(result: MachineResult) -> None:
            results.append(result)
            progress(result)

        for batch in chunks(list(machines), MAX_TARGETS):
            self._send(batch, command, timeout, done)
        deadline = self._clock() + DELIVERY_TIMEOUT + timeout + 60  # SSM ends both itself; this is a backstop
        try:
            while self._waiting:
                for command_id in list(self._waiting):
                    self._look(command_id, done)
                if not self._waiting:
                    break
                if self._clock() > deadline:
                    for command_id, left in self._waiting.items():
                        self._cancel(command_id, list(left))
                        for machine in left.values():
                            done(MachineResult(machine, "NoAnswer", None, "no answer from SSM in time"))
                    self._waiting.clear()
                    break
                self._sleep(self.poll_interval)
        except KeyboardInterrupt:
            for command_id, left in self._waiting.items():
                self._cancel(command_id, list(left))
            raise
        return results

    def _send(self, batch: Sequence[Machine], command: str, timeout: int, done: Progress) -> None:
        by_id = {m.id: m for m in batch}
        try:
            command_id = self._send_command(list(by_id), command, timeout)
        except AWS_ERRORS as exc:
            if error_code(exc) != "InvalidInstanceId":
                raise classify(exc, "ssm:SendCommand") from exc
            online = self._online(list(by_id))
            for instance_id in [i for i in by_id if i not in online]:
                done(MachineResult(by_id.pop(instance_id), "Unreachable", None, "SSM agent not online"))
            if not by_id:
                return
            try:
                command_id = self._send_command(list(by_id), command, timeout)
            except AWS_ERRORS as again:
                if error_code(again) != "InvalidInstanceId":
                    raise classify(again, "ssm:SendCommand") from again
                for machine in by_id.values():  # went offline in between
                    done(MachineResult(machine, "Unreachable", None, "SSM agent not online"))
                return
        self.command_ids.append(command_id)
        self._waiting[command_id] = by_id

    def _send_command(self, instance_ids: list[str], command: str, timeout: int) -> str:
        reply = self.ssm.send_command(
            InstanceIds=instance_ids,
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [command], "executionTimeout": [str(timeout)]},
            TimeoutSeconds=DELIVERY_TIMEOUT,
            MaxConcurrency=str(MAX_TARGETS),
            MaxErrors="100%",
            Comment="fceval-tui exec",
        )
        return reply["Command"]["CommandId"]

    def _online(self, instance_ids: list[str]) -> set[str]:
        return online_instances(self.ssm, instance_ids, "exec")

    def _look(self, command_id: str, done: Progress) -> None:
        left = self._waiting[command_id]
        try:
            pages = self.ssm.get_paginator("list_command_invocations").paginate(CommandId=command_id, Details=True)
            invocations = [inv for page in pages for inv in page["CommandInvocations"]]
        except AWS_ERRORS as exc:
            error = classify(exc, "ssm:ListCommandInvocations")
            if isinstance(error, BackendError) and error.transient:
                return  # a read: look again at the next poll
            raise error from exc
        for inv in invocations:
            machine = left.get(inv["InstanceId"])
            if machine is None or inv["Status"] not in FINAL:
                continue
            del left[inv["InstanceId"]]
            done(self._result(command_id, machine, inv))
        if not left:
            del self._waiting[command_id]

    def _result(self, command_id: str, machine: Machine, inv: dict) -> MachineResult:
        plugins = inv.get("CommandPlugins") or [{}]
        code = plugins[0].get("ResponseCode")
        output = plugins[0].get("Output", "")
        if len(output) >= PLUGIN_OUTPUT_LIMIT - 100:
            # Cut at the 2,500 characters ListCommandInvocations keeps (the agent's mark of the cut varies
            # with its version): read it again whole.
            output = self._whole_output(command_id, machine.id, output)
        return MachineResult(machine, inv["Status"], None if code is None or code < 0 else int(code), output)

    def _whole_output(self, command_id: str, instance_id: str, fallback: str) -> str:
        try:
            inv = self.ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except AWS_ERRORS:
            return fallback  # the first 2,500 characters are still worth showing
        stderr = inv.get("StandardErrorContent", "")
        return inv.get("StandardOutputContent", "") + (ERROR_HEADER + stderr if stderr else "")

    def _cancel(self, command_id: str, instance_ids: list[str]) -> None:
        try:
            self.ssm.cancel_command(CommandId=command_id, InstanceIds=instance_ids)
        except AWS_ERRORS as exc:
            log.warning("could not cancel SSM command %s: %s", command_id, exc)


def _ecs_results(settings: Settings, machines: Sequence[Machine], command: str, timeout: int, progress: Progress):
    from fceval_tui.backends import make_backend

    backend = make_backend("ecs", settings)

    def one(machine: Machine) -> MachineResult:
        try:
            # Waits for the task's exec agent, as tail and attach do.
            result = backend.exec_transport(machine.id).run(["sh", "-c", command], timeout=timeout)
        except TimeoutError as exc:
            return MachineResult(machine, "TimedOut", None, str(exc))
        except BackendError as exc:
            return MachineResult(machine, "Unreachable", None, str(exc))
        return MachineResult(machine, "Success" if result.ok else "Failed", result.exit_code, result.stdout)

    results = []
    with ThreadPoolExecutor(max_workers=ECS_PARALLEL, thread_name_prefix="exec-ecs") as pool:
        for future in as_completed([pool.submit(one, m) for m in machines]):
            results.append(future.result())
            progress(results[-1])
    return results


def run_on_fleet(
    settings: Settings,
    selection: Selection,
    command: str,
    *,
    timeout: float = 120,
    progress: Progress = lambda result: None,
    clients: AwsClients | None = None,
    poll_interval: float = 1.0,
) -> ExecReport:
    """Run `command` (a shell command line) on every machine of the selection; the results in the order
    they arrived. Ctrl-C cancels what is still running and re-raises."""
    seconds = max(1, math.ceil(timeout))
    ec2 = [m for m in selection.machines if m.backend == "ec2"]
    ecs = [m for m in selection.machines if m.backend == "ecs"]
    results: list[MachineResult] = []
    command_ids: list[str] = []
    if ec2:
        aws = clients or AwsClients(settings.region, settings.profile, ("ec2", "ssm"))
        fleet = RunCommandFleet(aws.ssm, poll_interval=poll_interval)
        try:
            results += fleet.run(ec2, command, seconds, progress)
        finally:
            command_ids = fleet.command_ids
    if ecs:
        results += _ecs_results(settings, ecs, command, seconds, progress)
    return ExecReport(command, selection, results, command_ids)
