"""ECS Fargate backend: one task per job attempt, driven through ECS Exec.

provision  register a task definition for this attempt (image from FCEVAL_ECS_IMAGE with
           {task_id}; main process `sleep TTL`, the hard limit) and run_task with
           enableExecuteCommand; "Capacity is unavailable" is a capacity error (the job waits)
start      wait for RUNNING, stage the pipeline in S3, fetch it in the container through a
           short-lived presigned URL and start it in tmux (through ECS Exec)
observe    read the status files through ECS Exec
collect    upload the packed artifacts through short-lived presigned PUT URLs, verify them in S3
cancel / cleanup   stop_task and deregister the task definition, also after errors

Presigned URLs travel as the command's stdin, never in argv, and are never logged.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar

from fceval_tui.backends import remote_tmux
from fceval_tui.backends.aws import AWS_ERRORS, AwsClients, chunks, classify, error_code, tag_map
from fceval_tui.backends.aws_constants import ECS_FAMILY_PREFIX, ECS_STARTED_BY
from fceval_tui.backends.base import (
    JobContext,
    Observation,
    Outcome,
    Resource,
    ResourceGone,
    TmuxTarget,
    is_managed,
)
from fceval_tui.backends.cloud import CloudBackend, remote_work_dir, require_settings
from fceval_tui.backends.manifest import MANIFEST, load_manifest, verify_uploads
from fceval_tui.config import Settings
from fceval_tui.domain import pipeline
from fceval_tui.domain.artifacts import split_s3
from fceval_tui.domain.models import Job
from fceval_tui.domain.prices import cost_so_far, fargate_hourly
from fceval_tui.domain.states import JobState
from fceval_tui.errors import CapacityError, PermanentError, TransientError
from fceval_tui.transports.base import Transport

CONTAINER = "main"
URL_SECONDS = 900  # presigned URLs live 15 minutes: long enough for one transfer
_STAGED = (pipeline.SCRIPT_NAME, pipeline.ENV_FILE)
_IMAGE_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

# Reads one URL per line from stdin and fetches/puts with whatever the image has.
_FETCH = (
    'read -r url; if command -v curl >/dev/null 2>&1; then curl -fsS -o {path} "$url"; '
    'elif command -v wget >/dev/null 2>&1; then wget -q -O {path} "$url"; '
    "else python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "
    '"$url" {path}; fi'
)
_PUT = (
    'put() {{ if command -v curl >/dev/null 2>&1; then curl -fsS -X PUT --upload-file "$1" "$2"; '
    "else python3 -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request("
    'sys.argv[2], data=open(sys.argv[1], "rb").read(), method="PUT")).read()\' "$1" "$2"; fi; }}\n'
    "cd {work} || exit 2\n"
    "read -r run_url; read -r report_url; status=0\n"
    'put {run} "$run_url" || status=1\n'
    'if [ -f {report} ]; then put {report} "$report_url" || status=1; fi\n'
    "exit $status"
)


def family_of(job_id: str, attempt: int) -> str:
    return f"{ECS_FAMILY_PREFIX}{job_id}-a{attempt}"


def image_for(template: str, task_id: str) -> str:
    """Image tags allow [A-Za-z0-9_.-]; anything else in a task id (e.g. '/') becomes '-'."""
    return template.replace("{task_id}", _IMAGE_TAG_UNSAFE.sub("-", task_id)[:128])


class EcsBackend(CloudBackend):
    name = "ecs"
    first_state = JobState.PROVISIONING
    poll_interval = 5.0

    compute_principal = "ecs-tasks.amazonaws.com"
    caller_actions: ClassVar[tuple[str, ...]] = (
        "ecs:RegisterTaskDefinition",
        "ecs:DeregisterTaskDefinition",
        "ecs:ListTaskDefinitions",
        "ecs:RunTask",
        "ecs:TagResource",
        "ecs:DescribeTasks",
        "ecs:ListTasks",
        "ecs:StopTask",
        "ecs:ExecuteCommand",
        "iam:PassRole",
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:DeleteObject",
    )
    instance_actions: ClassVar[tuple[str, ...]] = (
        # The task role: what ECS Exec's agent needs inside the container, and the upload into its inbox.
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
        "s3:PutObject",
    )

    def __init__(
        self,
        settings: Settings,
        clients: AwsClients | None = None,
        transport_for: Callable[[str], Transport] | None = None,
    ) -> None:
        super().__init__(settings)
        self.aws = clients or AwsClients(settings.region, settings.profile, ("ecs", "s3"))
        self._transport_for = transport_for or self._ecs_exec

    def check_ready(self) -> None:
        super().check_ready()
        require_settings(
            self.settings,
            self.name,
            ("FCEVAL_ECS_IMAGE", "FCEVAL_ECS_SUBNETS"),
            "set them in .env (see .env.template for examples)",
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
        s = self.settings
        try:
            reply = self.aws.ecs.run_task(
                cluster=s.ecs_cluster,
                taskDefinition=definition,
                launchType="FARGATE",
                enableExecuteCommand=True,
                startedBy=ECS_STARTED_BY,
                clientToken=family[-64:],  # a retried RunTask starts no second task
                networkConfiguration={
                    "awsvpcConfiguration": {
                        "subnets": list(s.ecs_subnets),
                        "securityGroups": list(s.ecs_security_groups),
                        "assignPublicIp": "ENABLED" if s.ecs_public_ip else "DISABLED",
                    }
                },
                tags=self._tags(ctx),
            )
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
        self._wait_running(resource_id)
        work = remote_work_dir(self.settings, ctx.job.id)
        staging = self.staging(ctx.job, ctx.attempt)
        manifest = self.new_manifest(ctx)
        script = self.pipeline_script(ctx, "", f" in {resource_id}")
        s3 = self.aws.s3
        staging.put(s3, MANIFEST, manifest.to_json())
        staging.put(s3, pipeline.SCRIPT_NAME, script)
        staging.put(s3, pipeline.ENV_FILE, pipeline.env_file_text(dict(ctx.env)))
        # launch_script fetches the script, then the values: one URL line each, in that order.
        urls = [self._presign("get_object", staging.bucket, staging.key(name)) for name in _STAGED]
        launch = remote_tmux.launch_script(work, ctx.job.id, lambda name, path: _FETCH.replace("{path}", path))
        stdin = "".join(url + "\n" for url in urls).encode()
        result = self._transport_for(resource_id).run(["sh", "-c", launch], stdin=stdin, timeout=300)
        if result.exit_code == remote_tmux.EXIT_NO_TMUX:
            raise PermanentError(
                f"tmux is not installed in the image of {resource_id}", "add tmux to the task image (FCEVAL_ECS_IMAGE)"
            )
        if not result.ok:
            detail = result.stderr.strip()[-300:]
            raise TransientError(f"starting the pipeline in {resource_id} failed (exit {result.exit_code}): {detail}")

    def observe(self, ctx: JobContext, resource_id: str) -> Observation:
        work = remote_work_dir(self.settings, ctx.job.id)
        try:
            result = self._transport_for(resource_id).run(["sh", "-c", remote_tmux.status_script(work, ctx.job.id)])
        except (TransientError, TimeoutError) as exc:
            self._raise_if_stopped(resource_id)
            raise TransientError(f"reading the status in {resource_id} failed: {exc}") from exc
        return remote_tmux.observation(result.stdout, resource_id, self._raise_if_stopped)

    def collect(self, ctx: JobContext, resource_id: str, observation: Observation) -> Outcome:
        s3 = self.aws.s3
        manifest = load_manifest(s3, self.staging(ctx.job, ctx.attempt), ctx, self.settings)
        run_url, report_url = manifest.urls(observation.exit_code == 0)
        urls = [self._presign("put_object", *split_s3(url)) for url in (run_url, report_url)]
        work = remote_work_dir(self.settings, ctx.job.id)
        q = shlex.quote
        upload = _PUT.format(work=q(work), run=pipeline.RUN_ARCHIVE, report=pipeline.REPORT_ARCHIVE)
        # The exit status is not trusted on its own: the verification below decides.
        self._transport_for(resource_id).run(["sh", "-c", upload], stdin="\n".join(urls + [""]).encode(), timeout=900)
        return verify_uploads(s3, manifest, observation.exit_code)

    def cancel(self, ctx: JobContext, resource_id: str) -> None:
        self._stop([resource_id], "cancelled by fceval-tui")

    def cleanup(self, ctx: JobContext, resource_id: str) -> None:
        family = family_of(ctx.job.id, ctx.attempt)
        self._stop(sorted({resource_id, *self._tasks_of(family)} - {""}), "fceval-tui job ended")
        for arn in self._definitions(family):
            self._deregister(arn)
        self.delete_staged(ctx)

    def hourly_cost(self) -> float:
        return fargate_hourly(self.settings.ecs_cpu, self.settings.ecs_memory)

    def list_resources(self) -> list[Resource]:
        now = datetime.now(UTC)
        cluster = self.settings.ecs_cluster
        ecs = self.aws.ecs
        resources: list[Resource] = []
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
            # familyPrefix names one whole family, so list every active definition and keep ours.
            definitions = [
                arn
                for page in ecs.get_paginator("list_task_definitions").paginate(status="ACTIVE")
                for arn in page["taskDefinitionArns"]
                if arn.rsplit("/", 1)[-1].startswith(ECS_FAMILY_PREFIX)
            ]
        except AWS_ERRORS as exc:
            raise classify(exc, f"listing fceval-tui tasks in ECS cluster {cluster}") from exc
        hourly = fargate_hourly(self.settings.ecs_cpu, self.settings.ecs_memory)
        for task in tasks:
            tags = tag_map(task.get("tags"))
            if not is_managed(tags) or task.get("lastStatus") == "STOPPED":
                continue
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
        for arn in definitions:
            # family fceval-tui-{job id}-a{attempt}:{revision}; job ids are {run id}-{seq}.
            job_id = arn.rsplit("/", 1)[-1].split(":")[0][len(ECS_FAMILY_PREFIX) :].rsplit("-a", 1)[0]
            resources.append(
                Resource(
                    backend=self.name,
                    kind="task-definition",
                    id=arn,
                    state="ACTIVE",
                    run_id=job_id.rsplit("-", 1)[0],
                    job_id=job_id,
                )
            )
        return resources

    def destroy_resource(self, resource: Resource) -> None:
        if resource.kind == "task":
            self._stop([resource.id], "fceval-tui teardown")
        elif resource.kind == "task-definition":
            self._deregister(resource.id)
        else:
            super().destroy_resource(resource)

    def tmux_target(self, job: Job) -> TmuxTarget | None:
        return TmuxTarget((), job.id, self._transport_for(job.resource_id)) if job.resource_id else None

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

    def _tags(self, ctx: JobContext) -> list[dict[str, str]]:
        return [{"key": k, "value": v} for k, v in ctx.tags.items()]

    def _register(self, ctx: JobContext, family: str) -> str:
        s = self.settings
        ttl_seconds = max(60, int((ctx.expires_at - datetime.now(UTC)).total_seconds()))
        container = {
            "name": CONTAINER,
            "image": image_for(s.ecs_image, ctx.job.task_id),
            "essential": True,
            # The dead-man's switch: the task ends when its main process does.
            "command": ["sleep", str(ttl_seconds)],
            "memory": s.ecs_memory,
            "linuxParameters": {"initProcessEnabled": True},  # recommended for ECS Exec
        }
        params: dict = {
            "family": family,
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": str(s.ecs_cpu),
            "memory": str(s.ecs_memory),
            "containerDefinitions": [container],
            "tags": self._tags(ctx),
        }
        if s.ecs_task_role_arn:
            params["taskRoleArn"] = s.ecs_task_role_arn
        if s.ecs_execution_role_arn:
            params["executionRoleArn"] = s.ecs_execution_role_arn
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

    def _definitions(self, family: str) -> list[str]:
        try:
            pages = self.aws.ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status="ACTIVE")
            return [arn for page in pages for arn in page["taskDefinitionArns"]]
        except AWS_ERRORS as exc:
            raise classify(exc, f"ecs:ListTaskDefinitions {family}") from exc

    def _describe(self, task_arn: str) -> dict | None:
        try:
            tasks = self.aws.ecs.describe_tasks(cluster=self.settings.ecs_cluster, tasks=[task_arn])["tasks"]
        except AWS_ERRORS as exc:
            raise classify(exc, f"ecs:DescribeTasks {task_arn}") from exc
        return tasks[0] if tasks else None

    def _wait_running(self, task_arn: str) -> None:
        delay = max(1, int(self.poll_interval))
        try:
            self.aws.ecs.get_waiter("tasks_running").wait(
                cluster=self.settings.ecs_cluster,
                tasks=[task_arn],
                WaiterConfig={"Delay": delay, "MaxAttempts": int(600 / delay) + 1},
            )
        except AWS_ERRORS as exc:
            self._raise_if_stopped(task_arn)
            raise TransientError(f"{task_arn} did not reach RUNNING: {exc}") from exc

    def _raise_if_stopped(self, task_arn: str) -> None:
        task = self._describe(task_arn)
        if task is None:
            raise ResourceGone(f"task {task_arn} no longer exists")
        if task.get("lastStatus") in ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"):
            reason = task.get("stoppedReason", "")
            raise ResourceGone(f"task {task_arn} is {task['lastStatus']}" + (f" ({reason})" if reason else ""))

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

    def _presign(self, method: str, bucket: str, key: str) -> str:
        return self.aws.s3.generate_presigned_url(method, Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_SECONDS)
