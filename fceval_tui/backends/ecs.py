"""ECS Fargate backend: one task per job attempt; the task's own command runs the pipeline.

provision  stage the manifest (with the attempt's inbox), register a task definition whose
           container runs `/bin/sh -c BOOTSTRAP` (ecs_task_definition: the entry point is ours, so an
           image's ENTRYPOINT cannot defeat the time-to-live), the job's values as its environment,
           and run_task with enableExecuteCommand; "Capacity is unavailable" is a capacity error
start      wait until the task leaves PENDING
observe    DescribeTasks, batched for every watched task (100 per call): RUNNING is running;
           STOPPED with the container's exit code is done; the bootstrap's own codes are errors
           with a fix (no tmux or aws CLI in the image, time-to-live reached)
collect    copy the archives from the inbox to the layout and verify them (`verify_uploads`); one missing,
           the task's log stream (FCEVAL_ECS_LOG_GROUP) says why (log_tail)
cancel / cleanup   stop_task; deregister and delete the task definition; delete staged objects

The bootstrap starts the pipeline in tmux on `{work dir}/tmux.sock` as the image's user, waits for
its `done` file (or the time-to-live) and exits with its code. No ECS Exec while a job runs, so jobs
need no session-manager-plugin; `tail`, `attach` and the live mirror use ECS Exec (which runs as
root, so it reaches the socket whatever the image's user) and need it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import ClassVar

from fceval_tui.backends import ecs_launch, log_tail, remote_tmux
from fceval_tui.backends import ecs_task_definition as taskdef
from fceval_tui.backends.aws import (
    AWS_ERRORS,
    RETRY_CONFIG,
    AwsClients,
    chunks,
    classify,
    error_code,
    new_session,
    tag_map,
)
from fceval_tui.backends.aws_constants import ECS_STARTED_BY, MANAGED_BY, MANAGED_BY_TAG
from fceval_tui.backends.base import (
    JobContext,
    Observation,
    Outcome,
    Resource,
    ResourceGone,
    TmuxTarget,
    is_managed,
)
from fceval_tui.backends.cloud import CloudBackend, require_settings
from fceval_tui.backends.ecs_exec_agent import WAIT as EXEC_AGENT_WAIT
from fceval_tui.backends.ecs_exec_agent import wait_until_exec_ready
from fceval_tui.backends.ecs_task_definition import CONTAINER, family_of, image_for
from fceval_tui.backends.manifest import MANIFEST, load_manifest, verify_uploads, with_upload_error
from fceval_tui.backends.status_board import StatusBoard
from fceval_tui.config import Settings
from fceval_tui.domain.models import Job
from fceval_tui.domain.prices import cost_so_far, fargate_hourly
from fceval_tui.domain.states import JobState
from fceval_tui.domain.triage import ErrorClass
from fceval_tui.errors import CapacityError, PermanentError, TransientError
from fceval_tui.transports.base import Transport

__all__ = ["CONTAINER", "EcsBackend", "family_of", "image_for"]

_STARTING = ("PROVISIONING", "PENDING", "ACTIVATING")
START_TIMEOUT = 600  # seconds a task may take to leave PENDING (image pull, ENI) before a retry


class _TaskBoard(StatusBoard[dict]):
    """The last DescribeTasks answer for every watched task, in batches of 100 (see status_board)."""

    doing = "ecs:DescribeTasks"

    def __init__(self, aws: AwsClients, cluster: str, max_age: Callable[[], float]) -> None:
        super().__init__(max_age)
        self.aws = aws  # its ecs client at each call: renewed credentials bring new clients
        self.cluster = cluster

    def _fetch(self, keys: Sequence[str]) -> dict[str, dict]:
        seen: dict[str, dict] = {}
        for arns in chunks(keys, 100):
            for task in self.aws.ecs.describe_tasks(cluster=self.cluster, tasks=list(arns))["tasks"]:
                seen[task["taskArn"]] = task
        return seen


class EcsBackend(CloudBackend):
    name = "ecs"
    first_state = JobState.PROVISIONING
    poll_interval = 5.0
    exec_agent_wait = EXEC_AGENT_WAIT  # seconds tail/attach/exec wait for the task's ECS Exec agent

    compute_principal = "ecs-tasks.amazonaws.com"
    caller_actions: ClassVar[tuple[str, ...]] = (
        "ecs:RegisterTaskDefinition",
        "ecs:DeregisterTaskDefinition",
        "ecs:DeleteTaskDefinitions",
        "ecs:ListTaskDefinitions",
        "ecs:DeleteTaskDefinitions",
        "tag:GetResources",
        "ecs:RunTask",
        "ecs:TagResource",
        "ecs:DescribeTasks",
        "ecs:ListTasks",
        "ecs:StopTask",
        "ecs:ExecuteCommand",  # tail, attach and the live mirror (never while a job runs)
        "logs:GetLogEvents",  # why an upload failed, with FCEVAL_ECS_LOG_GROUP
        "iam:PassRole",
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:DeleteObject",
    )
    instance_actions: ClassVar[tuple[str, ...]] = (
        # The task role: the pipeline copies its archives into the attempt's inbox ...
        "s3:PutObject",
        # ... and ECS Exec's agent in the container (attach and the live mirror).
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    )

    def __init__(
        self,
        settings: Settings,
        clients: AwsClients | None = None,
        transport_for: Callable[[str], Transport] | None = None,
    ) -> None:
        super().__init__(settings)
        self.aws = clients or AwsClients(settings.region, settings.profile, ("ecs", "logs", "s3"))
        self._transport_for = transport_for or self._ecs_exec
        self._board = _TaskBoard(self.aws, settings.ecs_cluster, max_age=lambda: self.poll_interval / 2)

    def check_ready(self) -> None:
        super().check_ready()
        require_settings(
            self.settings,
            self.name,
            ("FCEVAL_ECS_IMAGE", "FCEVAL_ECS_SUBNETS"),
            "set them in .env (see .env.template for examples)",
        )
        if self.settings.ecs_log_group:  # Fargate's awslogs driver writes as the execution role
            require_settings(
                self.settings,
                self.name,
                ("FCEVAL_ECS_EXECUTION_ROLE_ARN",),
                "FCEVAL_ECS_LOG_GROUP needs a task execution role: set it, or leave FCEVAL_ECS_LOG_GROUP empty",
            )

    # -- the Backend contract -----------------------------------------------------------------

    def provision(self, ctx: JobContext) -> str:
        family = family_of(ctx.job.id, ctx.attempt)
        existing = self._tasks_of(family)
        if existing:
            return existing[0]  # a retry after a lost RunTask response
        # Reuse this attempt's definition if a previous try registered it: a RunTask retried with
        # the same clientToken must carry the same parameters to be recognised as the same call.
        registered = self._definitions(family)
        definition = registered[-1] if registered else self._register(ctx, family)
        try:
            reply = ecs_launch.launch(self.aws.ecs, ecs_launch.run_task_params(self.settings, ctx, definition))
        except AWS_ERRORS as exc:
            raise classify(exc, f"ecs:RunTask {family}") from exc
        failures = reply.get("failures") or []
        if failures:
            reasons = "; ".join(f"{f.get('reason', '')} {f.get('detail', '')}".strip() for f in failures)
            if "capacity is unavailable" in reasons.lower():
                raise CapacityError(f"ecs:RunTask {family}: {reasons}", "the job waits and is retried")
            raise PermanentError(
                f"ecs:RunTask {family} failed: {reasons}",
                "check FCEVAL_ECS_SUBNETS, FCEVAL_ECS_SECURITY_GROUPS and the task roles",
            )
        return reply["tasks"][0]["taskArn"]

    def start(self, ctx: JobContext, resource_id: str) -> None:
        """The task's own command starts the pipeline: wait until it is past PENDING (observe reads the rest)."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            task = self._board.get(resource_id, fresh=True)
            if task is None:
                raise ResourceGone(f"task {resource_id} no longer exists")
            if task.get("lastStatus") not in _STARTING:
                return
            if time.monotonic() > deadline:
                raise TransientError(f"{resource_id} is still {task.get('lastStatus')} after {START_TIMEOUT} s")
            time.sleep(self.poll_interval)

    def observe(self, ctx: JobContext, resource_id: str) -> Observation:
        task = self._board.get(resource_id)
        if task is None:
            raise ResourceGone(f"task {resource_id} no longer exists")
        status = task.get("lastStatus", "")
        if status != "STOPPED":
            return Observation(JobState.RUNNING, detail=f"ECS {status}")
        reason = task.get("stoppedReason") or ""
        container = next((c for c in task.get("containers", []) if c.get("name") == CONTAINER), {})
        code = container.get("exitCode")
        if task.get("stopCode") == "TaskFailedToStart":
            raise PermanentError(
                f"task {resource_id} failed to start: {reason}", "check FCEVAL_ECS_IMAGE and the execution role"
            )
        if task.get("stopCode") != "EssentialContainerExited" or code is None:
            raise ResourceGone(f"task {resource_id} stopped before its pipeline finished ({reason or status})")
        if code in taskdef.EXIT_MEANINGS:
            message, fix = taskdef.EXIT_MEANINGS[code]
            if fix is None:
                raise ResourceGone(f"task {resource_id}: {message}")
            raise PermanentError(f"task {resource_id}: {message}", fix)
        return Observation(JobState.UPLOADING, done=True, exit_code=code, detail=f"ECS STOPPED: {reason}")

    def collect(self, ctx: JobContext, resource_id: str, observation: Observation) -> Outcome:
        self._board.forget(resource_id)
        s3 = self.aws.s3
        manifest = load_manifest(s3, self.staging(ctx.job, ctx.attempt), ctx, self.settings)
        outcome = verify_uploads(s3, manifest, observation.exit_code)
        if outcome.error_class == ErrorClass.UPLOAD and self.settings.ecs_log_group:
            said = log_tail.upload_error(self.aws.logs, self.settings.ecs_log_group, taskdef.log_stream(resource_id))
            outcome = with_upload_error(outcome, manifest, said)
        return outcome

    def cancel(self, ctx: JobContext, resource_id: str) -> None:
        self._stop([resource_id], "cancelled by fceval-tui")

    def cleanup(self, ctx: JobContext, resource_id: str) -> None:
        family = family_of(ctx.job.id, ctx.attempt)
        tasks = sorted({resource_id, *self._tasks_of(family)} - {""})
        self._stop(tasks, "fceval-tui job ended")
        for arn in tasks:
            self._board.forget(arn)
        for arn in self._definitions(family):
            self._deregister(arn)
        self._delete_definitions(self._definitions(family, "INACTIVE"))
        self.delete_staged(ctx)

    def would_create(self) -> dict[str, object]:
        s = self.settings
        return {
            "resource": "one Fargate task and its task definition per job attempt (both removed at the end)",
            "task_definition": f"{family_of('JOB', 0).replace('-a0', '-aN')} (image {s.ecs_image or '(unset)'})",
            "cpu_units": s.ecs_cpu,
            "memory_mib": s.ecs_memory,
            "cluster": s.ecs_cluster,
            "subnets": ", ".join(s.ecs_subnets) or "(unset)",
            "security_groups": ", ".join(s.ecs_security_groups) or "the VPC default",
            "public_ip": s.ecs_public_ip,
        }

    def hourly_cost(self) -> float:
        return fargate_hourly(self.settings.ecs_cpu, self.settings.ecs_memory)

    def list_resources(self) -> list[Resource]:
        now = datetime.now(UTC)
        cluster = self.settings.ecs_cluster
        hourly = fargate_hourly(self.settings.ecs_cpu, self.settings.ecs_memory)
        resources: list[Resource] = []
        for task in self._managed_tasks():
            tags = tag_map(task.get("tags"))
            started = task.get("startedAt") or task.get("createdAt")
            resources.append(
                Resource.from_tags(
                    tags,
                    backend=self.name,
                    kind="task",
                    id=task["taskArn"],
                    state=task.get("lastStatus", ""),
                    started_at=started,
                    cost_usd=cost_so_far(hourly, started, now),
                    detail={"cluster": cluster, "definition": task.get("taskDefinitionArn")},
                )
            )
        for arn, tags, status in self._managed_definitions():
            resources.append(Resource.from_tags(tags, backend=self.name, kind="task-definition", id=arn, state=status))
        return resources

    def destroy_resource(self, resource: Resource) -> None:
        if resource.kind == "task":
            self._stop([resource.id], "fceval-tui teardown")
        elif resource.kind == "task-definition":
            self._delete_definition(resource.id, resource.state)
        else:
            super().destroy_resource(resource)

    def _managed_tasks(self) -> list[dict]:
        """Live tasks this console started in the cluster (none when the cluster does not exist)."""
        cluster = self.settings.ecs_cluster
        ecs = self.aws.ecs
        try:
            arns = [
                arn
                for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, startedBy=ECS_STARTED_BY)
                for arn in page["taskArns"]
            ]
            tasks = [
                task
                for batch in chunks(arns, 100)
                for task in ecs.describe_tasks(cluster=cluster, tasks=list(batch), include=["TAGS"])["tasks"]
            ]
        except AWS_ERRORS as exc:
            if error_code(exc) == "ClusterNotFoundException":
                return []  # nothing can run in a cluster that does not exist
            raise classify(exc, f"listing fceval-tui tasks in ECS cluster {cluster}") from exc
        return [t for t in tasks if is_managed(tag_map(t.get("tags"))) and t.get("lastStatus") != "STOPPED"]

    def _managed_definitions(self) -> list[tuple[str, dict[str, str], str]]:
        """(arn, tags, status) of every task definition in the region carrying the ManagedBy tag, ACTIVE or
        INACTIVE (deregistered ones stay until deleted), found by tag whatever their family is named: one
        paginated Resource Groups Tagging API GetResources; the status from ListTaskDefinitions per status
        (a constant number of calls, where DescribeTaskDefinition would be one per definition)."""
        # A fresh Session: clients are not built from the runner's shared Session outside its constructor.
        tagging = new_session(self.settings.region, self.settings.profile).client(
            "resourcegroupstaggingapi", config=RETRY_CONFIG
        )
        try:
            pages = tagging.get_paginator("get_resources").paginate(
                TagFilters=[{"Key": MANAGED_BY_TAG, "Values": [MANAGED_BY]}],
                ResourceTypeFilters=["ecs:task-definition"],
            )
            tagged = {
                item["ResourceARN"]: tag_map(item.get("Tags"))
                for page in pages
                for item in page["ResourceTagMappingList"]
            }
            status = {
                arn: state
                for state in (("ACTIVE", "INACTIVE") if tagged else ())
                for page in self.aws.ecs.get_paginator("list_task_definitions").paginate(status=state)
                for arn in page["taskDefinitionArns"]
            }
        except AWS_ERRORS as exc:
            raise classify(exc, "listing fceval-tui ECS task definitions") from exc
        # A tagged definition in neither list is being deleted (DELETE_IN_PROGRESS): nothing left to do.
        return [(arn, tags, status[arn]) for arn, tags in sorted(tagged.items()) if arn in status]

    def _delete_definition(self, arn: str, status: str) -> None:
        """Deregister (if still ACTIVE), then delete: AWS deletes only INACTIVE task definitions."""
        if status == "ACTIVE":
            self._deregister(arn)
        self._delete_definitions([arn])

    def tmux_target(self, job: Job) -> TmuxTarget | None:
        """The job's tmux server on its explicit socket, through ECS Exec (which runs as root).

        The bootstrap falls back to another work directory when the image's user cannot write
        FCEVAL_REMOTE_WORK_DIR, so one command asks the container which socket exists."""
        if not job.resource_id:
            return None
        transport = self.exec_transport(job.resource_id)
        candidates = taskdef.sockets(self.settings, job.id)
        found = transport.run(["sh", "-c", remote_tmux.socket_probe_script(candidates)]).stdout.strip()
        return TmuxTarget(("-S", found if found in candidates else candidates[0]), job.id, transport)

    def exec_transport(self, task_arn: str) -> Transport:
        """ECS Exec into the task's container, once DescribeTasks reports its exec agent RUNNING."""
        wait_until_exec_ready(
            lambda: self._board.get(task_arn, fresh=True),
            task_arn,
            CONTAINER,
            timeout=self.exec_agent_wait,
            interval=min(2.0, self.poll_interval),
        )
        return self._transport_for(task_arn)

    # -- helpers -------------------------------------------------------------------------------

    def _ecs_exec(self, task_arn: str) -> Transport:
        from fceval_tui.transports.ecs_exec import EcsExecTransport

        s = self.settings
        return EcsExecTransport(
            s.ecs_cluster,
            task_arn,
            CONTAINER,
            region=s.region,
            profile=s.profile or None,
            command_prefix=s.aws_command_prefix,
        )

    def _register(self, ctx: JobContext, family: str) -> str:
        # The manifest (with the inbox the container is told about) is staged before the definition
        # exists, so a retry that finds the definition also finds its manifest.
        manifest = self.new_manifest(ctx)
        params = taskdef.definition(self.settings, ctx, family, manifest)
        self.staging(ctx.job, ctx.attempt, ctx.expires_at).put(self.aws.s3, MANIFEST, manifest.to_json())
        try:
            return self.aws.ecs.register_task_definition(**params)["taskDefinition"]["taskDefinitionArn"]
        except AWS_ERRORS as exc:
            if "too many concurrent attempts" in str(exc).lower():
                raise TransientError(f"ecs:RegisterTaskDefinition {family}: {exc}", "retried with backoff") from exc
            raise classify(exc, f"ecs:RegisterTaskDefinition {family}") from exc

    def _tasks_of(self, family: str) -> list[str]:
        try:
            return self.aws.ecs.list_tasks(cluster=self.settings.ecs_cluster, family=family, desiredStatus="RUNNING")[
                "taskArns"
            ]
        except AWS_ERRORS as exc:
            raise classify(exc, f"ecs:ListTasks {family}") from exc

    def _definitions(self, family: str, status: str = "ACTIVE") -> list[str]:
        try:
            pages = self.aws.ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status=status)
            return [arn for page in pages for arn in page["taskDefinitionArns"]]
        except AWS_ERRORS as exc:
            raise classify(exc, f"ecs:ListTaskDefinitions {family}") from exc

    def _stop(self, task_arns: list[str], reason: str) -> None:
        for arn in task_arns:
            try:
                self.aws.ecs.stop_task(cluster=self.settings.ecs_cluster, task=arn, reason=reason)
            except AWS_ERRORS as exc:
                if error_code(exc) == "InvalidParameterException" and "not found" in str(exc).lower():
                    continue  # already gone
                raise classify(exc, f"ecs:StopTask {arn}") from exc

    def _deregister(self, arn: str) -> None:
        try:
            self.aws.ecs.deregister_task_definition(taskDefinition=arn)
        except AWS_ERRORS as exc:
            raise classify(exc, f"ecs:DeregisterTaskDefinition {arn}") from exc

    def _delete_definitions(self, arns: list[str]) -> None:
        """Deleted, not only deregistered (an INACTIVE definition stays listed for ever otherwise)."""
        for batch in chunks(arns, 10):  # DeleteTaskDefinitions takes at most 10
            try:
                failures = self.aws.ecs.delete_task_definitions(taskDefinitions=list(batch)).get("failures") or []
            except AWS_ERRORS as exc:
                raise classify(exc, "ecs:DeleteTaskDefinitions") from exc
            for failure in failures:
                if "does not exist" not in (failure.get("reason") or ""):
                    raise TransientError(f"ecs:DeleteTaskDefinitions {failure.get('arn')}: {failure.get('reason')}")
