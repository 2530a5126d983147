"""Port forwards to jobs' machines: open, list and close them, each one logged in the ledger.

A job's machine is its EC2 instance, or its ECS task's container, addressed as Session Manager wants
it: `ecs:CLUSTER_TASKID_RUNTIMEID`, the runtime id read from DescribeTasks (AWS: "Start a session",
port forwarding, ECS targets). `Forwards` holds this process's open forwards (the console's list);
none outlives the process: `close_all` runs when the console exits, and the sessions are ended at
interpreter exit if anything skipped it.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime

from fceval_tui.config import Settings
from fceval_tui.domain.models import Job, utcnow
from fceval_tui.errors import UserError
from fceval_tui.ledger import Ledger
from fceval_tui.services.fleet_targets import check_id
from fceval_tui.services.operator import record_forward
from fceval_tui.transports.port_forward import PortForward, forward_argv, free_local_port, require_free


def check_port(value: int, what: str) -> int:
    if not 1 <= value <= 65535:
        raise UserError(f"{what} {value} is not a TCP port", "give a number from 1 to 65535")
    return value


def forward_target(settings: Settings, job: Job, ecs=None) -> str:
    """The Session Manager target of a job's machine; a UserError when it has none to forward to."""
    if job.backend not in ("ec2", "ecs"):
        if job.backend == "local":
            raise UserError(
                f"job {job.id} runs on this machine, so there is nothing to forward",
                "connect to the port on localhost directly",
            )
        raise UserError(
            f"job {job.id} runs on {job.backend}, which has no port forwarding",
            "forward reaches the EC2 instances and ECS tasks of running jobs",
        )
    if job.state.is_final or not job.resource_id:
        raise UserError(
            f"job {job.id} is {job.state.value} and has no live machine to forward to",
            "forward to a job that is running (see `fceval-tui status`)",
        )
    if job.backend == "ec2":
        return job.resource_id
    return _ecs_target(settings, job, ecs)


def _ecs_target(settings: Settings, job: Job, ecs) -> str:
    from fceval_tui.backends.aws import AWS_ERRORS, AwsClients, classify
    from fceval_tui.backends.ecs_task_definition import CONTAINER

    ecs = ecs or AwsClients(settings.region, settings.profile, ("ecs",)).ecs
    try:
        tasks = ecs.describe_tasks(cluster=settings.ecs_cluster, tasks=[job.resource_id])["tasks"]
    except AWS_ERRORS as exc:
        raise classify(exc, f"ecs:DescribeTasks {job.resource_id}") from exc
    task = tasks[0] if tasks else {}
    runtime = next((c.get("runtimeId") for c in task.get("containers", []) if c.get("name") == CONTAINER), None)
    if task.get("lastStatus") != "RUNNING" or not runtime:
        raise UserError(
            f"the task of job {job.id} is {task.get('lastStatus', 'gone').lower()}; only a running task can be reached",
            "wait until the job runs (see `fceval-tui status`)",
        )
    cluster = task.get("clusterArn", settings.ecs_cluster).rsplit("/", 1)[-1]
    return f"ecs:{cluster}_{job.resource_id.rsplit('/', 1)[-1]}_{runtime}"


@dataclass
class Forward:
    id: int
    job_id: str
    run_id: str
    target: str
    remote_port: int
    local_port: int
    session: PortForward = field(repr=False)
    opened_at: datetime = field(default_factory=utcnow)
    closing: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def url(self) -> str:
        return self.session.url

    @property
    def alive(self) -> bool:
        return self.session.alive


class Forwards:
    """This process's open forwards."""

    def __init__(self, settings: Settings, ledger: Ledger, by: str) -> None:
        self.settings = settings
        self.ledger = ledger
        self.by = by
        self._open: dict[int, Forward] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # A backstop for an exit that skipped close_all: end the sessions (the ledger may be closed by then).
        atexit.register(self._end_sessions)

    def open(self, job_id: str, remote_port: int, local_port: int | None = None, timeout: float = 60.0) -> Forward:
        """Start forwarding (blocks until the session listens: call it from a worker thread)."""
        job = self.ledger.get_job(check_id(job_id, "job id"))
        check_port(remote_port, "remote port")
        if local_port is None:
            local_port = free_local_port()
        else:
            require_free(check_port(local_port, "local port"))
        target = forward_target(self.settings, job)
        if shutil.which("session-manager-plugin") is None:
            raise UserError(
                "port forwarding needs session-manager-plugin, which is not on PATH",
                "install it: https://docs.aws.amazon.com/systems-manager/latest/userguide/"
                "session-manager-working-with-install-plugin.html",
            )
        s = self.settings
        argv = forward_argv(
            target,
            remote_port,
            local_port,
            region=s.region,
            profile=s.profile or None,
            command_prefix=s.aws_command_prefix,
        )
        session = PortForward(argv, local_port)
        session.open(timeout)
        forward = Forward(next(self._ids), job.id, job.run_id, target, remote_port, local_port, session)
        with self._lock:
            self._open[forward.id] = forward
        detail = {"target": target, "remote_port": remote_port, "local_port": local_port}
        record_forward(self.ledger, job.run_id, job.id, "open", by=self.by, **detail)
        return forward

    def list(self) -> list[Forward]:
        with self._lock:
            return sorted(self._open.values(), key=lambda f: f.id)

    def close(self, forward_id: int, reason: str = "closed") -> None:
        with self._lock:
            forward = self._open.get(forward_id)
        if forward is None:
            return
        # Listed until its session has ended and its close is logged: a close_all meanwhile (the console
        # exiting while a worker closes one) waits here for it, instead of returning with the session up.
        with forward.closing:
            with self._lock:
                if forward_id not in self._open:
                    return  # another thread closed it meanwhile
            ended = "ended by itself" if not forward.alive else reason
            forward.session.close()
            record_forward(
                self.ledger,
                forward.run_id,
                forward.job_id,
                "close",
                by=self.by,
                target=forward.target,
                local_port=forward.local_port,
                reason=ended,
            )
            with self._lock:
                del self._open[forward_id]

    def close_all(self, reason: str = "console exit") -> None:
        for forward in self.list():
            self.close(forward.id, reason)

    def _end_sessions(self) -> None:
        for forward in self.list():
            forward.session.close()
